"""`discovery-service`: flags mirror the DISCOVERY_* environment variables one to one."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence

import uvloop
from pydantic import ValidationError

from discovery.handoff import ERROR, READY, Handoff
from discovery.settings import Settings

log = logging.getLogger("discovery")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="discovery-service",
        description="Event-sourced cluster discovery service (HTTP + Talos gRPC API).",
        argument_default=argparse.SUPPRESS,
    )
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = "DISCOVERY_" + name.upper()
        default = field.default
        help_text = f"{field.description or ''} (env {env}, default {default!r})".strip()
        if field.annotation is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(flag, metavar=name.upper(), help=help_text)
    return parser


def load_settings(argv: Sequence[str] | None = None) -> Settings:
    """Settings from flags over environment over defaults; exits 2 naming a bad field."""
    args = vars(_parser().parse_args(argv))
    try:
        return Settings(**args)
    except ValidationError as exc:
        lines = [
            f"  --{'.'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}"
            for e in exc.errors()
        ]
        print("discovery-service: invalid settings:\n" + "\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None


async def serve(settings: Settings, handoff: Handoff | None = None) -> None:
    """Run until SIGTERM or SIGINT, then drain (final snapshot included)."""
    from discovery.runtime import Runtime

    runtime = Runtime(settings, handoff=handoff)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.stop_soon)
    async with runtime:
        # The loaded state lives as long as the process: keep the collector from walking it.
        gc.freeze()
        if handoff is not None:
            handoff.report(READY)
        await runtime.wait()
    log.info("service stopped")


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    settings = load_settings(args)
    from discovery import logs
    from discovery.startup import StartupError

    logs.configure(settings.log_level, settings.log_format)
    handoff = Handoff.from_env(os.environ)
    try:
        if handoff is None and settings.workers > 1:
            from discovery.supervisor import supervise

            # The supervisor runs on the stdlib loop: it serves nothing, and its subprocess
            # handling (pass_fds, the status pipes) is the standard library's.
            raise SystemExit(supervise(settings, args))
        if handoff is not None:
            _become_worker(handoff)
        # Every request allocates hundreds of objects, so the default young-generation trigger
        # (700) runs the collector constantly, and its older passes pause every watcher's
        # delivery (measured: 10,000 gRPC watchers, p99 724 -> 165 ms). Cycles are rare here;
        # reference counting frees almost everything.
        gc.set_threshold(50_000, 20, 1000)
        # uvloop: the event loop uvicorn itself would pick; the stdlib loop costs noticeably
        # more per socket operation, and every request is several of those.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(settings, handoff))
    except StartupError as exc:
        if handoff is not None:
            # The supervisor prints it, once for all its workers.
            handoff.report(ERROR + str(exc))
        else:
            print(f"discovery-service: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        pass


def _become_worker(handoff: Handoff) -> None:
    from discovery.handoff import die_with_supervisor

    die_with_supervisor(handoff)
    index = handoff.index

    def tag(record: logging.LogRecord) -> bool:
        record.worker = index
        return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(tag)


if __name__ == "__main__":
    main()
