// The migrations are embedded with `sqlx::migrate!`; rebuild when a step is added.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
