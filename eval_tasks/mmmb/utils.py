"""lmms-eval hooks of the MMMB (Parrot) tasks; the logic lives in plast_plugin.eval."""
from plast_plugin.eval.lmms_tasks import (  # noqa: F401
    aggregate_acc,
    aggregate_acc_exact,
    aggregate_circular_acc,
    aggregate_circular_acc_exact,
    doc_to_target,
    doc_to_text,
    doc_to_visual,
    process_docs,
    process_results,
)
