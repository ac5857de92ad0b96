"""scripts/demo_mc_set.py: the demo's translation-choice set in Parrot's TSV layout.

Built by running the script as the demo does, from a small synthetic held-out file, read back with the plugin's own TSV reader and task
loader (the route lmms-eval takes): the format, the four options, the rotations, the paired
options across languages, the md5 pins that serve it (and the refusal without them), and that
no probed or trained question gets in.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from eval_testutil import REPO
from plast_plugin.eval.parrot_data import load_parrot_task, read_parrot_tsv
from plast_plugin.eval.scoring import CIRCULAR_OFFSET
from plast_plugin.errors import PlastError

LANGS = ("en", "zh", "ar", "ru")
N_HELDOUT = 6
COLUMNS = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category", "image"]


def build_mc_set(heldout: Path, exclude: list[Path], languages, out: Path) -> subprocess.CompletedProcess:
    """`python scripts/demo_mc_set.py ...` as scripts/demo.sh runs it."""
    argv = ["--heldout", str(heldout), *(a for path in exclude for a in ("--exclude", str(path))),
            "--languages", ",".join(languages), "--out", str(out)]
    return subprocess.run([sys.executable, str(REPO / "scripts" / "demo_mc_set.py"), *argv],
                          capture_output=True, text=True, timeout=120)


def _built(out: Path, *args) -> dict:
    proc = build_mc_set(*args, out)
    assert proc.returncode == 0, proc.stderr
    assert str(out / "mc_set.json") in proc.stdout  # the summary line names the manifest it wrote
    return json.loads((out / "mc_set.json").read_text(encoding="utf-8"))


def _refused(pattern: str, *args) -> None:
    proc = build_mc_set(*args)
    assert proc.returncode == 1 and re.search(f"demo_mc_set: error: .*{pattern}", proc.stderr), proc.stderr


def _question(qid: int, lang: str) -> str:
    return {"en": f"How many apples does person {qid} have?", "zh": f"第{qid}个人有多少个苹果？",
            "ar": f"كم تفاحة لدى الشخص {qid}؟", "ru": f"Сколько яблок у человека {qid}?",
            "pt": f"Quantas maçãs tem a pessoa {qid}?"}[lang]


def _write_jsonl(path: Path, ids, langs=LANGS) -> Path:
    rows = [{"id": f"q{i}", "lang": lang, "question": _question(i, lang)} for lang in langs for i in ids]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def built(tmp_path):
    heldout = _write_jsonl(tmp_path / "heldout.jsonl", range(N_HELDOUT))
    probed = _write_jsonl(tmp_path / "probe.jsonl", range(100, 110), langs=("en", "zh", "ar", "ru", "pt"))
    trained = _write_jsonl(tmp_path / "train.jsonl", range(100, 110))
    out = tmp_path / "mc"
    manifest = _built(out, heldout, [probed, trained], LANGS)
    return tmp_path, out, manifest


def _docs(manifest, lang):
    return read_parrot_tsv(manifest["files"][lang], lang, "mmbench_ml")


def test_files_are_parrot_tsvs_with_four_options_and_the_true_translation(built):
    _, _, manifest = built
    assert sorted(Path(f).name for f in manifest["files"].values()) == [
        "mmbench_dev_ar.tsv", "mmbench_dev_cn.tsv", "mmbench_dev_en.tsv", "mmbench_dev_ru.tsv"]
    english = {f"q{i}": _question(i, "en") for i in range(N_HELDOUT)}
    for lang in LANGS:
        docs = _docs(manifest, lang)  # the plugin's own reader: columns, answers, images all valid
        assert len(docs) == N_HELDOUT * 4
        header = Path(manifest["files"][lang]).read_text(encoding="utf-8").splitlines()[0].split("\t")
        assert header == COLUMNS
        for doc in docs:
            qid = doc["l2_category"]
            options = [doc[c] for c in "ABCD"]
            assert doc["options"] == "ABCD" and len(set(options)) == 4
            assert all(text in english.values() for text in options)  # English sentences only
            assert doc[doc["answer"]] == english[qid]  # the right option is the true translation
            assert doc["hint"] == _question(int(qid[1:]), lang)
            assert doc["question"] == manifest["control_question_en" if lang == "en" else "question"]
            assert doc["category"] == manifest["label"] and "not MMBench" in doc["category"]
            assert doc["image"] == docs[0]["image"]  # one blank image, by reference after row 1
        raw = [line.split("\t")[-1] for line in Path(manifest["files"][lang]).read_text().splitlines()[1:]]
        assert len(raw[0]) > 64 and set(raw[1:]) == {"0"}


def test_rotations_move_every_option_through_every_letter(built):
    _, _, manifest = built
    for lang in LANGS:
        by_index = {d["index"]: d for d in _docs(manifest, lang)}
        assert sorted(by_index) == sorted(i + k * CIRCULAR_OFFSET for i in range(N_HELDOUT) for k in range(4))
        for i in range(N_HELDOUT):
            original = [by_index[i][c] for c in "ABCD"]
            letters = set()
            for k in range(1, 4):
                copy = by_index[i + k * CIRCULAR_OFFSET]
                assert [copy[c] for c in "ABCD"] == original[-k:] + original[:-k]  # shifted k to the right
                assert copy[copy["answer"]] == by_index[i][by_index[i]["answer"]]
                assert copy["hint"] == by_index[i]["hint"]
                letters.add(copy["answer"])
            letters.add(by_index[i]["answer"])
            assert letters == set("ABCD")  # a model that always says one letter fails every circular group


def test_languages_share_options_so_they_are_paired(built):
    _, _, manifest = built
    en = {d["index"]: [d[c] for c in "ABCD"] + [d["answer"]] for d in _docs(manifest, "en")}
    for lang in ("zh", "ar", "ru"):
        assert {d["index"]: [d[c] for c in "ABCD"] + [d["answer"]] for d in _docs(manifest, lang)} == en


def test_answer_positions_are_not_constant_and_the_build_is_deterministic(built, tmp_path):
    root, _, manifest = built
    answers = [d["answer"] for d in _docs(manifest, "zh") if d["index"] < CIRCULAR_OFFSET]
    assert len(set(answers)) > 1
    again = _built(tmp_path / "again", root / "heldout.jsonl", [root / "probe.jsonl"], LANGS)
    assert again["md5"] == manifest["md5"]


def test_served_only_with_explicit_md5_pins(built, monkeypatch):
    """The set goes through the mmbench_ml task loader via PLAST_PARROT_DIR; without the pins
    written in mc_set.json it is refused as not the published file, and with them it is recorded
    as a user pin whose question count does not fit the published one."""
    _, out, manifest = built
    assert all(Path(path).is_relative_to(out) for path in manifest["files"].values())  # the folder to serve
    monkeypatch.setenv("PLAST_PARROT_DIR", str(out))
    monkeypatch.delenv("PLAST_PARROT_MD5", raising=False)
    with pytest.raises(PlastError, match="differs from the published"):
        load_parrot_task("mmbench_ml", "zh")
    pins = (out / "parrot_md5.txt").read_text().strip()
    assert pins == manifest["parrot_md5_spec"]
    monkeypatch.setenv("PLAST_PARROT_MD5", pins)
    for lang in LANGS:
        task = load_parrot_task("mmbench_ml", lang)
        assert task.identity.check == "user pin" and task.identity.md5 == manifest["md5"][f"mmbench_ml_{lang}"]
        assert task.questions == N_HELDOUT and task.rotated_copies == 3 * N_HELDOUT and not task.single_pass
        assert any("not comparable" in w for w in task.warnings)


def test_no_probed_or_trained_question_gets_in(tmp_path):
    heldout = _write_jsonl(tmp_path / "heldout.jsonl", range(N_HELDOUT))
    trained = _write_jsonl(tmp_path / "train.jsonl", range(3, 10))  # q3..q5 are also held out
    _refused(r"held-out question q3 also appears in .*train\.jsonl", heldout, [trained], LANGS, tmp_path / "mc")
    # the same text under another id is a leak too (the model trained on that very pair)
    same_text = tmp_path / "renamed.jsonl"
    same_text.write_text(json.dumps({"id": "other-7", "lang": "ar", "question": _question(2, "ar")},
                                    ensure_ascii=False) + "\n", encoding="utf-8")
    _refused(r"q2 \(ar\) has the same text as a question in .*renamed\.jsonl", heldout, [same_text], LANGS,
             tmp_path / "mc")
    assert not (tmp_path / "mc").exists()  # nothing written when refused


def test_bad_input_is_named(tmp_path):
    heldout = _write_jsonl(tmp_path / "heldout.jsonl", range(3))  # 3 questions: no 3 distractors
    probe = _write_jsonl(tmp_path / "probe.jsonl", range(100, 101))
    _refused("question q0: only 2 other distinct English sentence", heldout, [probe], LANGS, tmp_path / "mc")
    _refused("needs en", heldout, [probe], ["zh", "ar"], tmp_path / "mc")
    _refused("Parrot's benchmarks have no language 'de'", heldout, [probe], ["en", "de"], tmp_path / "mc")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "x"}\n')
    _refused(r"--exclude .*broken\.jsonl: line 1", _write_jsonl(tmp_path / "h6.jsonl", range(6)), [broken], LANGS,
             tmp_path / "mc")
