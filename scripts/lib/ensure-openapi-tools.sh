# Sourced by scripts/test: the openapi tests check docs/api/openapi.json with a real OpenAPI 3.1 validator
# (the Python openapi-spec-validator package, which brings jsonschema for the answer checks); install it
# for the current user when it is missing.
if ! python3 -c 'import openapi_spec_validator' >/dev/null 2>&1; then
    echo "installing the Python openapi-spec-validator package (OpenAPI document checks)" >&2
    python3 -m pip install --quiet --disable-pip-version-check openapi-spec-validator >&2 \
        || python3 -m pip install --quiet --disable-pip-version-check --user openapi-spec-validator >&2 \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages openapi-spec-validator >&2
fi
