//! Demo CRM data for `owl up --demo`: a small, plausible business (organizations, users, customers,
//! orders, service records) spread over the last 400 days, so every analytics chart has something
//! to show. Deterministic apart from "now", and loaded once: a database that already holds the demo
//! (its marker organization) is left alone.

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{
    CrmStore, CrmStoreError, NewCrmOrganization, NewCrmUser, NewCustomer, NewOrder, NewServiceRecord,
};
use owl_sql::DAY_MS;

/// The Owl organizations the demo rows belong to, as `(org_code, org_name, parent_code)`: the admin API's
/// example tree. Creating them in Owl lets a user of `050101` see that organization's share.
pub const DEMO_ORGANIZATIONS: &[(&str, &str, &str)] = &[
    ("0501", "广东省电力公司", "0"),
    ("050101", "广州供电局", "0501"),
    ("050102", "深圳供电局", "0501"),
];

/// The CRM code of the organization whose presence marks a loaded demo.
const MARKER: &str = "DEMO-HQ";
const DAYS: i64 = 400;

/// What [`load_demo_data`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoReport {
    /// The demo was already there; nothing was written.
    pub already_loaded: bool,
    /// CRM organizations written.
    pub organizations: usize,
    /// CRM users written.
    pub users: usize,
    /// Customers written.
    pub customers: usize,
    /// Orders written.
    pub orders: usize,
    /// Service records written.
    pub service_records: usize,
}

/// Creates the CRM tables in the database `storage.crm_database_url` names (Owl's own when empty)
/// and fills them with the demo, once.
pub async fn load_demo_data(config: &owl_config::Config) -> Result<DemoReport, CrmStoreError> {
    let store = CrmStore::connect_lazy(&config.crm_database_url(), 2)?;
    let result = async {
        store.migrate().await?;
        load_into(&store, Utc::now().timestamp_millis()).await
    }
    .await;
    store.close().await;
    result
}

/// Fills a migrated store with the demo as of `now_ms`, unless it is there already.
pub(crate) async fn load_into(store: &CrmStore, now_ms: i64) -> Result<DemoReport, CrmStoreError> {
    let mut sql = store.sql("SELECT COUNT(*) FROM crm_organizations WHERE code = ");
    sql.bind(MARKER.to_string());
    let present: i64 = sql.query_scalar().fetch_one(store.pool()).await?;
    if present > 0 {
        return Ok(DemoReport {
            already_loaded: true,
            ..DemoReport::default()
        });
    }
    let mut rng = StdRng::seed_from_u64(0x0_71);
    let leaf_orgs = [DEMO_ORGANIZATIONS[1].0, DEMO_ORGANIZATIONS[2].0];
    let pick_org = |rng: &mut StdRng| leaf_orgs[rng.random_range(0..leaf_orgs.len())].to_string();
    // More recent days are likelier, so the trend grows.
    let created = |rng: &mut StdRng| {
        let back = (rng.random::<f64>().powf(1.6) * DAYS as f64) as i64;
        now_ms - back * DAY_MS - rng.random_range(0..DAY_MS)
    };
    let mut report = DemoReport::default();
    let mut batch = store.batch().await?;

    let org_types = [
        "internal", "internal", "internal", "internal", "internal", "vendor", "vendor", "vendor", "agent",
        "agent",
    ];
    for (i, org_type) in org_types.iter().enumerate() {
        let code = if i == 0 {
            MARKER.to_string()
        } else {
            format!("DEMO-{i:02}")
        };
        batch
            .organization(&NewCrmOrganization {
                code,
                name: format!("演示机构 {}", i + 1),
                org_type: org_type.to_string(),
                is_active: i < 8,
                org_code: if i == 0 {
                    DEMO_ORGANIZATIONS[0].0.to_string()
                } else {
                    pick_org(&mut rng)
                },
                created_at_ms: now_ms - (DAYS + 30 - i as i64 * 20) * DAY_MS,
            })
            .await?;
        report.organizations += 1;
    }

    for i in 0..50 {
        let last_login_at_ms = rng
            .random_bool(0.8)
            .then(|| now_ms - rng.random_range(0..60 * DAY_MS));
        batch
            .user(&NewCrmUser {
                username: format!("demo-user-{i:02}"),
                is_active: i % 10 < 7,
                last_login_at_ms,
                org_code: pick_org(&mut rng),
                created_at_ms: created(&mut rng),
            })
            .await?;
        report.users += 1;
    }

    let mut customers: Vec<(i64, i64, String)> = Vec::new();
    for i in 0..300 {
        let created_at_ms = created(&mut rng);
        let org_code = pick_org(&mut rng);
        let id = batch
            .customer(&NewCustomer {
                name: format!("客户 {i:03}"),
                customer_type: if rng.random_bool(0.6) {
                    "individual"
                } else {
                    "organization"
                }
                .to_string(),
                source: if rng.random_bool(0.7) { "own" } else { "agent" }.to_string(),
                org_code: org_code.clone(),
                created_at_ms,
            })
            .await?;
        customers.push((id, created_at_ms, org_code));
        report.customers += 1;
    }

    let statuses = [
        ("submitted", 13),
        ("approved", 20),
        ("processing", 27),
        ("completed", 33),
        ("cancelled", 7),
    ];
    for i in 0..600 {
        let (customer_id, customer_created, org_code) =
            customers[rng.random_range(0..customers.len())].clone();
        let created_at_ms = rng.random_range(customer_created..=now_ms.max(customer_created));
        let status = weighted(&mut rng, &statuses);
        let completed_at_ms =
            (status == "completed").then(|| (created_at_ms + rng.random_range(1..20) * DAY_MS).min(now_ms));
        batch
            .order(&NewOrder {
                order_no: format!("DEMO-ORD-{i:05}"),
                customer_id: Some(customer_id),
                status: status.to_string(),
                amount: f64::from(rng.random_range(100..5000_u32)) * 1000.0,
                currency_code: "IDR".to_string(),
                org_code,
                created_at_ms,
                completed_at_ms,
            })
            .await?;
        report.orders += 1;
    }

    let service_statuses = [
        ("pending", 15),
        ("in_progress", 25),
        ("completed", 50),
        ("cancelled", 10),
    ];
    let priorities = [("low", 20), ("normal", 50), ("high", 25), ("urgent", 5)];
    for _ in 0..800 {
        let (customer_id, customer_created, org_code) =
            customers[rng.random_range(0..customers.len())].clone();
        batch
            .service_record(&NewServiceRecord {
                customer_id: Some(customer_id),
                status: weighted(&mut rng, &service_statuses).to_string(),
                priority: weighted(&mut rng, &priorities).to_string(),
                org_code,
                created_at_ms: rng.random_range(customer_created..=now_ms.max(customer_created)),
            })
            .await?;
        report.service_records += 1;
    }
    batch.commit().await?;
    tracing::info!(
        backend = store.backend().name(),
        customers = report.customers,
        orders = report.orders,
        "crm demo data loaded"
    );
    Ok(report)
}

fn weighted<'a>(rng: &mut StdRng, choices: &[(&'a str, u32)]) -> &'a str {
    let total: u32 = choices.iter().map(|c| c.1).sum();
    let mut roll = rng.random_range(0..total);
    for (name, weight) in choices {
        if roll < *weight {
            return name;
        }
        roll -= weight;
    }
    choices[choices.len() - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn demo_loads_once_into_a_fresh_sqlite_database() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = owl_config::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        config.storage.crm_database_url = owl_config::Secret::new(format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("crm.db").display()
        ));
        let first = load_demo_data(&config).await.unwrap();
        assert!(!first.already_loaded);
        assert_eq!(
            (
                first.organizations,
                first.users,
                first.customers,
                first.orders,
                first.service_records
            ),
            (10, 50, 300, 600, 800)
        );
        let second = load_demo_data(&config).await.unwrap();
        assert!(second.already_loaded, "idempotent");

        let store = CrmStore::connect_lazy(&config.crm_database_url(), 1).unwrap();
        let orders: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(orders, 600, "nothing written twice");
        let future: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM orders WHERE created_at > {} OR completed_at > {}",
            Utc::now().timestamp_millis(),
            Utc::now().timestamp_millis()
        )))
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(future, 0, "no order in the future");
        store.close().await;
    }
}
