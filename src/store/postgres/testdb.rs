//! A fresh database per test on the server `HUBBUB_TEST_POSTGRES` names
//! (shared with `store::migrate`'s tests).

use std::sync::atomic::{AtomicUsize, Ordering};

use postgres::{Client, Config, NoTls};

use super::{Postgres, parse_config};

/// The variable naming the test server: a base URL whose database is
/// only used to create and drop each test's own.
pub const ENV: &str = "HUBBUB_TEST_POSTGRES";

/// A database made for one test, dropped (connections and all) after it.
pub struct TestDb {
    admin: Config,
    name: String,
    pub config: Config,
}

impl TestDb {
    /// `None`, loudly, when no test server is configured.
    pub fn new() -> Option<TestDb> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let Some(url) = std::env::var(ENV).ok().filter(|u| !u.is_empty()) else {
            eprintln!("!!!!! {ENV} is unset: SKIPPING this PostgreSQL test (CI sets it) !!!!!");
            return None;
        };
        let admin = parse_config(&url).expect("a valid test URL");
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut c = admin.connect(NoTls).expect("the test server is up");
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let mut config = admin.clone();
        config.dbname(&name);
        Some(TestDb {
            admin,
            name,
            config,
        })
    }

    pub fn open(&self) -> Postgres {
        Postgres::open_config(self.config.clone()).unwrap()
    }

    /// A plain connection to this database, for checks and sabotage.
    pub fn client(&self) -> Client {
        self.config.connect(NoTls).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = self.admin.connect(NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
