//! Who may change what, enforced by PostgreSQL itself: three roles with the least privileges
//! each kind of ember process needs, and what the connected role may do, read at connect.
//!
//! A flag in an operator's config is no security (anyone with the database URL can write); the
//! database's grants are. `ember db roles` prints the SQL (and `--apply` runs it as the owner).
//! SQLite is single-user: the file's mode keeps others out, and its user may do everything.

use super::{Db, DbError, Engine, q};

pub const VIEWER: &str = "ember_viewer";
pub const OPERATOR: &str = "ember_operator";
pub const SERVICE: &str = "ember_service";

/// The SQL that creates the roles and grants them (idempotent; run by the owner of the
/// tables, in the ember database).
pub fn roles_sql() -> String {
    format!(
        "-- ember's roles: grant one to each login (GRANT {OPERATOR} TO alice).\n\
-- {VIEWER}: reads everything (consoles and listings of on-call viewers).\n\
-- {OPERATOR}: may also enqueue and cancel jobs (which writes the jobs and their targets'\n\
--   status) and append audit events; may not touch services (heartbeats, disable, remove).\n\
-- {SERVICE}: the volume services (ember serve, a console that runs them): all they write.\n\
-- Audit events are append-only for all three: no UPDATE or DELETE but by the owner.\n\
DO $$ BEGIN CREATE ROLE {VIEWER} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;\n\
DO $$ BEGIN CREATE ROLE {OPERATOR} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;\n\
DO $$ BEGIN CREATE ROLE {SERVICE} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;\n\
GRANT {VIEWER} TO {OPERATOR};\n\
GRANT {OPERATOR} TO {SERVICE};\n\
GRANT USAGE ON SCHEMA public TO {VIEWER};\n\
GRANT SELECT ON services, volumes, snapshots, backups, attachments, jobs, events, _sqlx_migrations TO {VIEWER};\n\
GRANT INSERT, UPDATE, DELETE ON volumes, snapshots, backups, attachments, jobs TO {OPERATOR};\n\
GRANT INSERT ON events TO {OPERATOR};\n\
GRANT USAGE ON SEQUENCE events_id_seq TO {OPERATOR};\n\
GRANT INSERT, UPDATE, DELETE ON services TO {SERVICE};\n\
GRANT USAGE ON SEQUENCE services_id_seq TO {SERVICE};\n\
REVOKE UPDATE, DELETE, TRUNCATE ON events FROM {VIEWER}, {OPERATOR}, {SERVICE};\n"
    )
}

/// What the connected role may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The login (`current_user`); for SQLite, the file's user.
    pub user: String,
    /// The highest ember role it holds (directly or inherited), e.g. `[ember_operator]`.
    pub roles: Vec<String>,
    /// May enqueue and cancel jobs (INSERT on jobs).
    pub can_change: bool,
    /// May run volume services (UPDATE on services).
    pub can_serve: bool,
}

impl Access {
    /// `alice (ember_viewer)`, for messages.
    pub fn describe(&self) -> String {
        if self.roles.is_empty() {
            self.user.clone()
        } else {
            format!("{} ({})", self.user, self.roles.join(", "))
        }
    }

    /// Why this role may not run services, with the grant that fixes it.
    pub fn serve_refusal(&self) -> Option<String> {
        (!self.can_serve).then(|| {
            format!(
                "connected as {}, which may not run volume services (it lacks UPDATE on table services): GRANT {SERVICE} TO {}",
                self.describe(),
                self.user
            )
        })
    }
}

impl Db {
    /// What the connected role may do (SQLite: everything).
    pub async fn access(&self) -> Result<Access, DbError> {
        if self.engine == Engine::Sqlite {
            return Ok(Access {
                user: std::env::var("USER").unwrap_or_else(|_| "this user".into()),
                roles: vec![],
                can_change: true,
                can_serve: true,
            });
        }
        let sql = format!(
            "SELECT CAST(current_user AS TEXT), \
               CAST(CASE WHEN has_table_privilege('jobs', 'INSERT') THEN 1 ELSE 0 END AS BIGINT), \
               CAST(CASE WHEN has_table_privilege('services', 'UPDATE') THEN 1 ELSE 0 END AS BIGINT), \
               CAST(COALESCE((SELECT string_agg(rolname, ',') FROM pg_roles \
                 WHERE rolname IN ('{VIEWER}', '{OPERATOR}', '{SERVICE}') \
                   AND pg_has_role(current_user, oid, 'MEMBER')), '') AS TEXT)"
        );
        let (user, change, serve, roles): (String, i64, i64, String) =
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_one(&self.pool)
                .await
                .map_err(q("read the role's privileges"))?;
        // Each role includes the one below it: name the highest held.
        let held: Vec<&str> = roles.split(',').collect();
        let highest = [SERVICE, OPERATOR, VIEWER]
            .into_iter()
            .find(|r| held.contains(r));
        Ok(Access {
            user,
            roles: highest.map(String::from).into_iter().collect(),
            can_change: change != 0,
            can_serve: serve != 0,
        })
    }

    /// Runs [`roles_sql`] (as the tables' owner).
    pub async fn apply_roles(&self) -> Result<(), DbError> {
        if self.engine != Engine::Postgres {
            return Err(DbError::Scheme {
                url: format!(
                    "{} (roles are PostgreSQL's; SQLite is single-user)",
                    self.display_url
                ),
            });
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(roles_sql()))
            .execute(&self.pool)
            .await
            .map_err(q("create the roles"))?;
        Ok(())
    }
}
