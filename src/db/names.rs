//! Names for ids: what a job or an audit event works on, as an operator calls it. Volumes and
//! snapshots keep their rows after deletion, so a finished job's target still has a name.

use std::collections::HashMap;

use super::{Db, DbError, q};

/// How many ids go into one query (well under SQLite's and PostgreSQL's bind limits).
const CHUNK: usize = 500;

impl Db {
    /// The display name of each id that is a volume (`name`) or a snapshot (`volume@snapshot`,
    /// as `rbd` writes image snapshots); ids that are neither are left out.
    pub async fn target_names(&self, ids: &[String]) -> Result<HashMap<String, String>, DbError> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(CHUNK) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let marks = marks.join(", ");
            let sql = format!(
                "SELECT v.id, v.name FROM volumes v WHERE v.id IN ({marks}) \
                 UNION ALL \
                 SELECT s.id, COALESCE(p.name, '?') || '@' || s.name FROM snapshots s \
                 LEFT JOIN volumes p ON p.id = s.volume_id WHERE s.id IN ({marks}) \
                 UNION ALL \
                 SELECT b.id, 'backup ' || b.name FROM backups b WHERE b.id IN ({marks})"
            );
            let mut query = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id);
            }
            for (id, name) in query
                .fetch_all(&self.pool)
                .await
                .map_err(q("target names"))?
            {
                out.insert(id, name);
            }
        }
        Ok(out)
    }

    /// `volume@snapshot` of every snapshot a live volume is a clone of: the Parent column of
    /// `volume list` (one query, not one per row).
    pub async fn parent_names(&self) -> Result<HashMap<String, String>, DbError> {
        let rows = sqlx::query_as::<_, (String, String)>(
            "SELECT s.id, COALESCE(p.name, '?') || '@' || s.name FROM snapshots s \
             LEFT JOIN volumes p ON p.id = s.volume_id \
             WHERE s.id IN (SELECT source_snapshot_id FROM volumes \
                            WHERE deleted_at IS NULL AND source_snapshot_id IS NOT NULL)",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("parent names"))?;
        Ok(rows.into_iter().collect())
    }
}
