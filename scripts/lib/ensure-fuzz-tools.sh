# Sourced by scripts/test and scripts/fuzz: the schemathesis fuzz test (tests/it/fuzz_schemathesis.rs)
# runs the Python schemathesis CLI against docs/api/openapi.json; install it for the current user when it
# is missing.
if ! python3 -c 'import schemathesis' >/dev/null 2>&1; then
    echo "installing the Python schemathesis package (OpenAPI fuzzing)" >&2
    python3 -m pip install --quiet --disable-pip-version-check schemathesis >&2 \
        || python3 -m pip install --quiet --disable-pip-version-check --user schemathesis >&2 \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages schemathesis >&2
fi
