"""Pure status computation: (spec, observed, previous) -> status dict."""
