"""The operator's tools, run as `docker run --rm IMAGE COMMAND` or `python -m entrypoint COMMAND`:
`certs new|renew|inspect`, `client-config`, `gce`. They use the runtime's modules (the checks in
`tls`, the settings' names); the runtime never imports them. A user's mistake is one `ToolError`,
printed as one line by `cli.main`."""
