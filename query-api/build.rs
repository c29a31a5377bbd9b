// The CRM store embeds its SQL migrations with `sqlx::migrate!`; rebuild when a step is added.
fn main() {
    println!("cargo:rerun-if-changed=../migrations/crm");
}
