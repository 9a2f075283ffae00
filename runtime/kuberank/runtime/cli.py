"""`kuberank-runtime`: parse flags/environment, load the model in the background, serve HTTP."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Sequence

from kuberank.modelkit.paths import default_model_path
from kuberank.protocol.flags import misspelt_variables, setting_problems
from kuberank.protocol.serving import serve
from kuberank.runtime.app import create_app
from kuberank.runtime.engine import Engine
from kuberank.runtime.model import use_cuda_defaults
from kuberank.runtime.settings import RuntimeSettings, build_parser, load_settings
from pydantic import ValidationError

KEEP_ALIVE_SECONDS = 75


def parse_settings(argv: Sequence[str] | None) -> RuntimeSettings:
    """Flags over KUBERANK_* variables; a bad value exits 2 with one line naming it."""
    try:
        return load_settings(argv)
    except ValidationError as exc:
        build_parser().error(setting_problems(exc, "KUBERANK_"))


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = parse_settings(argv)
    for typo in misspelt_variables(os.environ, "KUBERANK_", RuntimeSettings.model_fields):
        logging.getLogger(__name__).warning("%s", typo)
    use_cuda_defaults(settings.gpu_layers)  # before the engine's first CUDA call

    draining, failed = threading.Event(), threading.Event()

    def stop_on_failure(_: BaseException) -> None:
        # A pod that cannot load its model must exit so Kubernetes reports CrashLoopBackOff;
        # at once (there is nothing to drain), and with the reason below as its last line.
        draining.set()
        failed.set()

    engine = Engine(settings, on_failure=stop_on_failure)
    app = create_app(settings, engine, draining)
    serve(app, settings.drain_seconds, draining, failed, settings.read_timeout,
          on_closed=engine.metrics.connection_closed,
          host=settings.host, port=settings.port, log_level="info",
          timeout_graceful_shutdown=round(settings.shutdown_seconds),
          # Longer than the gateway keeps idle upstream connections (30 s), so it never sends
          # on one this server is closing at that moment.
          timeout_keep_alive=KEEP_ALIVE_SECONDS)
    if engine.error is not None:
        hint = ("; `kuberank-models build` writes the embedded default, or serve another with "
                "--model" if settings.model == default_model_path()
                and not settings.model.exists() else "")
        sys.exit(f"kuberank-runtime: cannot serve {settings.model}: {engine.error}{hint}")


if __name__ == "__main__":
    main()
