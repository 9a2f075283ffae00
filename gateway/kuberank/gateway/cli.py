"""``kuberank-gateway``: parse flags/env into settings and serve the app with uvicorn."""

from __future__ import annotations

import logging
import os
import sys

from kuberank.gateway.app import create_app
from kuberank.gateway.settings import GatewaySettings
from kuberank.protocol.flags import misspelt_variables, setting_problems
from kuberank.protocol.serving import serve
from pydantic import ValidationError
from pydantic_settings import CliApp


def parse_settings(argv: list[str] | None) -> GatewaySettings:
    """Flags over KUBERANK_GATEWAY_* variables; a bad value exits 2 with one line naming it."""
    try:
        return CliApp.run(GatewaySettings, cli_args=argv)
    except ValidationError as err:
        print(f"kuberank-gateway: error: {setting_problems(err, 'KUBERANK_GATEWAY_')}",
              file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for typo in misspelt_variables(os.environ, "KUBERANK_GATEWAY_", GatewaySettings.model_fields):
        logging.getLogger(__name__).warning("%s", typo)
    if settings.access_log:  # its own switch, whatever the log level
        logging.getLogger("kuberank.gateway.access").setLevel(logging.INFO)
    app = create_app(settings)
    serve(
        app,
        settings.drain_seconds,
        app.state.gateway.draining,
        read_timeout=settings.read_timeout,
        on_closed=app.state.gateway.metrics.connection_closed,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        timeout_keep_alive=settings.keep_alive_seconds,
        # Paths and statuses only; request headers (and so keys) are never logged.
        access_log=False,
    )


if __name__ == "__main__":
    main()
