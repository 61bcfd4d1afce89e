//! Prints the OpenAPI document (`coder::openapi::document_json`); `scripts/gen-openapi` writes it to
//! `docs/api/openapi.json`.

fn main() {
    print!("{}", coder::openapi::document_json());
}
