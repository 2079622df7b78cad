"""The `siamtrack` command: a thin click group whose sub-commands load lazily.

Commands live in `siamtrack.commands.<module>`; importing torch only when a command
runs keeps `siamtrack --help` instant.
"""

from __future__ import annotations

import importlib
import sys

import click

from siamtrack import __version__
from siamtrack.errors import SiamtrackError

# name -> "module:attribute" of a click.Command
COMMANDS: dict[str, str] = {
    "run": "siamtrack.commands.run:run",
    "batch": "siamtrack.commands.batch:batch",
    "webcam": "siamtrack.commands.webcam:webcam",
    "export-masks": "siamtrack.commands.export_masks:export_masks",
    "export": "siamtrack.commands.export:export_group",
    "weights": "siamtrack.commands.weights:weights",
    "demo": "siamtrack.commands.demo:demo",
    "eval": "siamtrack.commands.eval:eval_group",
    "bench": "siamtrack.commands.bench:bench",
    "train": "siamtrack.commands.train:train",
    "vot": "siamtrack.commands.vot:vot",
}


class LazyGroup(click.Group):
    """A group that imports a sub-command's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="siamtrack")
def cli() -> None:
    """Track and segment any object in a video from one box (SiamMask).

    \b
    Example:
      siamtrack run video.mp4 --bbox 305,112,165,250
    """


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit code 1."""
    try:
        cli.main(args=argv, prog_name="siamtrack", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        # One line, like every other user error; `--help` shows the usage.
        hint = f" (see `siamtrack {exc.ctx.command_path.partition(' ')[2]} --help`)" if exc.ctx else ""
        click.echo(f"Error: {exc.format_message()}{hint}".replace("  ", " "), err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SiamtrackError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
