"""The ``iohwatch`` command line.

Subcommands live in ``agent/commands/<name>.py`` and are imported only when invoked, so
``iohwatch --help`` stays fast and never imports torch, TensorRT or a Kafka client.
"""

from __future__ import annotations

import importlib

import click

# name -> (module under agent.commands, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("demo", "demo", "Run everything on this machine: broker, simulated beds, agent, live alerts."),
    "simulate": ("simulate", "simulate", "Write a synthetic cohort of VitalDB-format .vital files."),
    "replay": ("replay", "replay", "Publish .vital or WFDB recordings to Kafka as live beds."),
    "run": ("run", "run", "Start the agent worker (Faust) against Kafka."),
    "score": ("score", "score", "Score a recording offline with the agent's own pipeline."),
    "alerts": ("alerts", "alerts", "Print alerts from ioh.alerts."),
    "bench": ("bench", "bench", "Measure throughput, latency and memory per bed through broker and agent."),
    "ingest": ("ingest", "ingest", "Receive HL7 v2 over MLLP or the Vital Recorder stream."),
    "hl7": ("hl7", "hl7", "Inspect HL7 messages; send alerts out as IHE PCD-04."),
    "export": ("export", "export", "Export models to ONNX engines with manifests."),
    "engine": ("engine", "engine", "Inspect and benchmark engines."),
    "cohort": ("cohort", "cohort", "Build training cohorts from recordings."),
    "train": ("train", "train", "Train the forecaster (two stages) and export engines."),
    "evaluate": ("evaluate", "evaluate", "Evaluate a run against the baselines on a cohort's test split."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        try:
            mod = importlib.import_module(f"agent.commands.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"agent.commands.{module}":
                return None
            raise
        return getattr(mod, attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="iohwatch")
def main() -> None:
    """iohwatch: forecast intraoperative hypotension from arterial-pressure streams."""


if __name__ == "__main__":  # pragma: no cover
    main()
