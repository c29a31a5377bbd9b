//! The CRM test environment: an application (from `common`) whose CRM database is Owl's own SQLite
//! file, a fresh PostgreSQL database or a fresh MariaDB/MySQL database, each dropped when the test
//! ends; and the data a test inserts and counts itself.
//!
//! PostgreSQL (`OWL_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`), MySQL
//! (`OWL_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`) and Redis must be reachable:
//! a test fails loudly when they are not, unless `OWL_TEST_SKIP_SERVICES=1` says there are none.

#![allow(dead_code)]

use axum::http::StatusCode;
use owl_query_api::crm::{CrmStore, NewCrmOrganization, NewCrmUser, NewCustomer, NewOrder, NewServiceRecord};
use serde_json::{Value, json};

use super::common::{TestEnv, Variant, services_skipped};

/// Where the CRM data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrmDb {
    /// Owl's own database (`storage.crm_database_url` empty): SQLite, or PostgreSQL in the Redis
    /// variant.
    Shared,
    /// A PostgreSQL database of its own.
    Postgres,
    /// A MariaDB/MySQL database of its own.
    MySql,
}

/// Milliseconds in a day.
pub const DAY: i64 = 86_400_000;

/// An application with a CRM database.
pub struct CrmEnv {
    pub env: TestEnv,
    pub store: CrmStore,
    pub db: CrmDb,
    _server: Option<owl_sql::testing::TempDatabase>,
}

impl std::ops::Deref for CrmEnv {
    type Target = TestEnv;
    fn deref(&self) -> &TestEnv {
        &self.env
    }
}

impl CrmEnv {
    /// Starts an application on SQLite whose CRM data lives in `db`; `None` when `db` needs a
    /// service and `OWL_TEST_SKIP_SERVICES=1`.
    pub async fn start(db: CrmDb) -> Option<CrmEnv> {
        CrmEnv::start_on(db, Variant::Sqlite, |_| {}).await
    }

    /// Starts an application on `variant` (Owl's database and cache) with the CRM data in `db`.
    pub async fn start_on(
        db: CrmDb,
        variant: Variant,
        tweak: impl FnOnce(&mut owl_config::Config),
    ) -> Option<CrmEnv> {
        if db != CrmDb::Shared && services_skipped() {
            eprintln!("skipping the {db:?} CRM database: OWL_TEST_SKIP_SERVICES=1");
            return None;
        }
        let server = match db {
            CrmDb::Shared => None,
            CrmDb::Postgres => Some(owl_sql::testing::TempDatabase::create("owl_crm_test").await),
            CrmDb::MySql => Some(owl_sql::testing::TempDatabase::mysql("owl_crm_test").await),
        };
        let crm_url = server.as_ref().map(owl_sql::testing::TempDatabase::url);
        let env = TestEnv::start_with(variant, |config| {
            if let Some(url) = crm_url {
                config.storage.crm_database_url = owl_config::Secret::new(url);
            }
            tweak(config);
        })
        .await?;
        let store = CrmStore::of(&env.state).await.expect("crm store opens");
        if db != CrmDb::Shared {
            // An external CRM database is never migrated implicitly: the test creates the tables.
            store.migrate().await.expect("crm migrations apply");
        }
        Some(CrmEnv {
            env,
            store,
            db,
            _server: server,
        })
    }

    /// Now on the application's clock.
    pub fn now(&self) -> i64 {
        self.env.clock.now_ms()
    }

    /// Inserts a data set in one transaction.
    pub async fn insert(&self, data: &Dataset) {
        let mut batch = self.store.batch().await.unwrap();
        for org in &data.organizations {
            batch.organization(org).await.unwrap();
        }
        for user in &data.users {
            batch.user(user).await.unwrap();
        }
        let mut ids = Vec::with_capacity(data.customers.len());
        for customer in &data.customers {
            ids.push(batch.customer(customer).await.unwrap());
        }
        for (order, customer) in &data.orders {
            let order = NewOrder {
                customer_id: customer.map(|i| ids[i]),
                ..order.clone()
            };
            batch.order(&order).await.unwrap();
        }
        for (record, customer) in &data.service_records {
            let record = NewServiceRecord {
                customer_id: customer.map(|i| ids[i]),
                ..record.clone()
            };
            batch.service_record(&record).await.unwrap();
        }
        batch.commit().await.unwrap();
    }

    /// GETs a CRM analytics API endpoint and returns `data`, checking the envelope.
    pub async fn crm_get(&self, token: &str, path: &str, message: &str) -> (Value, String) {
        let reply = self
            .call("GET", path, Some(token), None)
            .await
            .expect(StatusCode::OK);
        assert_eq!(reply.body["code"], 200, "{}", reply.text);
        assert_eq!(reply.body["message"], message, "{}", reply.text);
        let cache = reply
            .headers
            .get("x-cache")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (reply.body["data"].clone(), cache)
    }

    /// Creates a role of level 2 holding `codes` and a user of it in `org_code`; returns a token.
    pub async fn user_with(&self, admin: &str, user_code: &str, org_code: &str, codes: &[&str]) -> String {
        let ids = self.permission_ids(admin, codes).await;
        let role_code = format!("role_{user_code}");
        let role = self
            .call(
                "POST",
                "/api/roles",
                Some(admin),
                Some(json!({ "role_code": role_code, "role_name": role_code, "role_level": 2 })),
            )
            .await
            .expect(StatusCode::CREATED);
        let role_id = role.body["data"]["id"].as_i64().unwrap();
        self.call(
            "POST",
            &format!("/api/roles/{role_id}/permissions"),
            Some(admin),
            Some(json!({ "permission_ids": ids })),
        )
        .await
        .expect(StatusCode::OK);
        self.create_user(
            admin,
            json!({ "user_code": user_code, "username": user_code, "password": "Passw0rd", "org_code": org_code, "role_id": role_id }),
        )
        .await;
        self.login(user_code, "Passw0rd").await.0
    }
}

/// Rows a test inserts; orders and service records name their customer by index in `customers`.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub organizations: Vec<NewCrmOrganization>,
    pub users: Vec<NewCrmUser>,
    pub customers: Vec<NewCustomer>,
    pub orders: Vec<(NewOrder, Option<usize>)>,
    pub service_records: Vec<(NewServiceRecord, Option<usize>)>,
}

impl Dataset {
    pub fn organization(&mut self, org_type: &str, is_active: bool, org_code: &str, created_at_ms: i64) {
        let n = self.organizations.len();
        self.organizations.push(NewCrmOrganization {
            code: format!("CRM-{org_code}-{n}"),
            name: format!("机构 {n}"),
            org_type: org_type.into(),
            is_active,
            org_code: org_code.into(),
            created_at_ms,
        });
    }

    pub fn user(
        &mut self,
        is_active: bool,
        last_login_at_ms: Option<i64>,
        org_code: &str,
        created_at_ms: i64,
    ) {
        let n = self.users.len();
        self.users.push(NewCrmUser {
            username: format!("u{n}"),
            is_active,
            last_login_at_ms,
            org_code: org_code.into(),
            created_at_ms,
        });
    }

    /// Adds a customer and returns its index.
    pub fn customer(
        &mut self,
        customer_type: &str,
        source: &str,
        org_code: &str,
        created_at_ms: i64,
    ) -> usize {
        let n = self.customers.len();
        self.customers.push(NewCustomer {
            name: format!("customer-{n}"),
            customer_type: customer_type.into(),
            source: source.into(),
            org_code: org_code.into(),
            created_at_ms,
        });
        n
    }

    #[allow(clippy::too_many_arguments)]
    pub fn order(
        &mut self,
        customer: Option<usize>,
        status: &str,
        amount: f64,
        currency_code: &str,
        org_code: &str,
        created_at_ms: i64,
        completed_at_ms: Option<i64>,
    ) {
        let n = self.orders.len();
        self.orders.push((
            NewOrder {
                order_no: format!("ORD-{n:05}-{}", uuid::Uuid::new_v4().simple()),
                customer_id: None,
                status: status.into(),
                amount,
                currency_code: currency_code.into(),
                org_code: org_code.into(),
                created_at_ms,
                completed_at_ms,
            },
            customer,
        ));
    }

    pub fn service_record(
        &mut self,
        customer: Option<usize>,
        status: &str,
        priority: &str,
        org_code: &str,
        created_at_ms: i64,
    ) {
        self.service_records.push((
            NewServiceRecord {
                customer_id: None,
                status: status.into(),
                priority: priority.into(),
                org_code: org_code.into(),
                created_at_ms,
            },
            customer,
        ));
    }
}

/// Epoch milliseconds of a UTC time written `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn at(text: &str) -> i64 {
    owl_model::parse_timestamp(text)
        .unwrap_or_else(|| panic!("bad time {text}"))
        .timestamp_millis()
}

/// Runs an async test body once per CRM database: `on_every_crm_db!(name, ...)` makes modules
/// `name` with tests `sqlite`, `postgres` and `mysql` calling `name(CrmDb)`.
#[macro_export]
macro_rules! on_every_crm_db {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::crm_support::CrmDb;

                #[tokio::test]
                async fn sqlite() {
                    super::$name(CrmDb::Shared).await;
                }

                #[tokio::test]
                async fn postgres() {
                    super::$name(CrmDb::Postgres).await;
                }

                #[tokio::test]
                async fn mysql() {
                    super::$name(CrmDb::MySql).await;
                }
            }
        )*
    };
}
