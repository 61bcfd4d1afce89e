// `sqlx::migrate!` embeds the migrations at compile time, but on stable Rust cargo does not know the
// macro read that directory: without this, adding a migration would not rebuild the crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
