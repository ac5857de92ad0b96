"""Shared data of the core tests (not in conftest.py: another suite's conftest would shadow it
when both run in one pytest)."""

from __future__ import annotations

import json
from pathlib import Path

QUESTIONS = {
    "1": {"en": "How many apples does Tom have left?", "zh": "汤姆还剩下多少个苹果？",
          "pt": "Quantas maçãs o Tom ainda tem?", "ar": "كم تفاحة بقيت مع توم؟",
          "tr": "Tom'un kaç elması kaldı?", "ru": "Сколько яблок осталось у Тома?"},
    "2": {"en": "What color is the sky on a clear day?", "zh": "晴天的时候天空是什么颜色？",
          "pt": "De que cor é o céu num dia claro?", "ar": "ما لون السماء في يوم صاف؟",
          "tr": "Açık bir günde gökyüzü ne renktir?", "ru": "Какого цвета небо в ясный день?"},
    "3": {"en": "Where is the nearest train station?", "zh": "最近的火车站在哪里？",
          "pt": "Onde fica a estação de trem mais próxima?", "ar": "أين أقرب محطة قطار؟",
          "tr": "En yakın tren istasyonu nerede?", "ru": "Где ближайший вокзал?"},
    "4": {"en": "A shop sells 12 pens for 3 dollars. How much do 20 pens cost?",
          "zh": "一家商店3美元卖12支笔。20支笔多少钱？",
          "pt": "Uma loja vende 12 canetas por 3 dólares. Quanto custam 20 canetas?",
          "ar": "متجر يبيع 12 قلما مقابل 3 دولارات. كم ثمن 20 قلما؟",
          "tr": "Bir dükkan 12 kalemi 3 dolara satıyor. 20 kalem kaç dolar?",
          "ru": "Магазин продаёт 12 ручек за 3 доллара. Сколько стоят 20 ручек?"},
    "5": {"en": "Why do cats sleep so much?", "zh": "猫为什么睡这么多？", "pt": "Por que os gatos dormem tanto?",
          "ar": "لماذا تنام القطط كثيرا؟", "tr": "Kediler neden bu kadar çok uyur?",
          "ru": "Почему кошки так много спят?"},
}


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def question_rows(languages=("en", "zh", "pt", "ar", "tr", "ru"), ids=None):
    return [{"id": qid, "lang": lang, "question": texts[lang]}
            for qid, texts in QUESTIONS.items() if ids is None or qid in ids for lang in languages]
