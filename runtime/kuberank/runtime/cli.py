"""`kuberank-runtime`: parse flags/environment, load the model in the background, serve HTTP."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence

import uvicorn
from kuberank.runtime.app import create_app
from kuberank.runtime.engine import Engine
from kuberank.runtime.settings import load_settings
from pydantic import ValidationError


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = load_settings(argv)
    except ValidationError as exc:
        sys.exit(f"kuberank-runtime: invalid settings:\n{exc}")

    def stop_on_failure(_: BaseException) -> None:
        # A pod that cannot load its model must exit so Kubernetes reports CrashLoopBackOff.
        os.kill(os.getpid(), signal.SIGTERM)

    engine = Engine(settings, on_failure=stop_on_failure)
    uvicorn.run(create_app(settings, engine), host=settings.host, port=settings.port,
                log_level="info", timeout_graceful_shutdown=10)
    if engine.error is not None:
        sys.exit(f"kuberank-runtime: cannot serve {settings.model}: {engine.error}")


if __name__ == "__main__":
    main()
