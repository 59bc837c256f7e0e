"""Run report: `<output_dir>/report.md` plus PNG plots of every stage that has run.

Reads what the stages leave behind, and skips a stage that left nothing:

    <stage>/trainer_state.json (or the newest <stage>/checkpoint-*/)   sft and dpo `log_history`
    aift/stats.json, aift/dataset (`score_chosen` / `score_rejected`)  AIFT pair statistics
    rm/metrics.json                                                     reward model held-out pairwise accuracy
    eval/results.json                                                   see westwind.evaluation.run
    <stage>/.westwind-stage.json                                        stage wall time (pipeline marker)

    outputs  reading them    sections  one builder per stage    plots  the PNGs
    formatting  numbers    build  report.md and the run summary
"""

from westwind.report.build import summary_lines, write_report

__all__ = ["summary_lines", "write_report"]
