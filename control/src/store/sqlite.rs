//! The embedded store: SQLite (bundled with rusqlite) in one file in the data directory.
//!
//! Write-ahead logging keeps every committed transaction across a crash or `kill -9`
//! and never leaves a half-written one; `synchronous = NORMAL` (the default) may lose the
//! last transactions on a power cut, `FULL` flushes each one to the disk. The file is
//! checked (`PRAGMA quick_check`) when it is opened.

use super::{Page, Preference, Redeemed, Store, StoreError, TokenRecord};
use crate::model::room::{Room, RoomConfig};
use crate::model::service::Service;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;
use switchyard_config::Synchronous;

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS services (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    key        TEXT NOT NULL,
    is_super   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rooms (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    config     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rooms_by_service ON rooms(service_id, seq);
CREATE TABLE IF NOT EXISTS tokens (
    id         TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    room_id    TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user       TEXT NOT NULL,
    role       TEXT NOT NULL,
    preference TEXT NOT NULL,
    host       TEXT NOT NULL,
    secure     INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    used_ms    INTEGER
);
CREATE INDEX IF NOT EXISTS tokens_by_expiry ON tokens(expires_ms);
CREATE INDEX IF NOT EXISTS tokens_by_room ON tokens(room_id);
CREATE TABLE IF NOT EXISTS secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"#;

/// SQLite behind a mutex: one connection, short transactions. A background thread with a
/// connection of its own moves the write-ahead log into the database file (checkpoints),
/// so that the flush to disk a checkpoint needs never stalls a request.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Held for its `Drop`, which stops the thread.
    _checkpointer: Option<Checkpointer>,
}

/// How often the background thread checkpoints the write-ahead log.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

struct Checkpointer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(db)?;
        conn.execute_batch("PRAGMA busy_timeout = 5000;")
            .map_err(db)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(CHECKPOINT_EVERY);
                    // PASSIVE never blocks writers; what it cannot copy now it copies later.
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(error = %e, "checkpoint of the store's write-ahead log failed");
                    }
                }
            })
            .map_err(|e| StoreError::Database(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<Self, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        let conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        restrict_permissions(path);
        let sync = match synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA wal_autocheckpoint = 0;"
        ))
        .map_err(|e| open_err(e.to_string()))?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| open_err(e.to_string()))?;
        if check != "ok" {
            return Err(open_err(format!("integrity check failed: {check}")));
        }
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| open_err(e.to_string()))?;
        if version > SCHEMA_VERSION {
            return Err(open_err(format!(
                "the database has schema version {version}, newer than this binary's {SCHEMA_VERSION}: run a newer switchyard-control"
            )));
        }
        conn.execute_batch(SCHEMA)
            .map_err(|e| open_err(e.to_string()))?;
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))
            .map_err(|e| open_err(e.to_string()))?;
        let checkpointer = Checkpointer::start(path)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            _checkpointer: Some(checkpointer),
        })
    }

    /// An in-memory store, for unit tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(db)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            _checkpointer: None,
        })
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions
        // roll back on drop), so a poisoned lock is safe to keep using.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // The database holds service keys: owner only. Failing to tighten is not fatal
    // (e.g. a file on a filesystem without modes).
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) {}

fn row_service(r: &rusqlite::Row<'_>) -> rusqlite::Result<Service> {
    Ok(Service {
        id: r.get(0)?,
        name: r.get(1)?,
        key: r.get(2)?,
        is_super: r.get::<_, i64>(3)? != 0,
    })
}

fn room_from(id: String, config: &str) -> Result<Room, StoreError> {
    let config: RoomConfig =
        serde_json::from_str(config).map_err(|e| StoreError::Corrupt(format!("room {id}: {e}")))?;
    Ok(Room { id, config })
}

fn room_json(room: &Room) -> Result<String, StoreError> {
    serde_json::to_string(&room.config).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store for SqliteStore {
    fn create_service(&self, s: &Service) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO services (id, name, key, is_super) VALUES (?1, ?2, ?3, ?4)",
                params![s.id, s.name, s.key, s.is_super as i64],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::Conflict(format!("a service named {:?} already exists", s.name))
                }
                e => db(e),
            })?;
            Ok(())
        })
    }

    fn service(&self, id: &str) -> Result<Option<Service>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT id, name, key, is_super FROM services WHERE id = ?1",
                [id],
                row_service,
            )
            .optional()
            .map_err(db)
        })
    }

    fn super_service(&self) -> Result<Option<Service>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT id, name, key, is_super FROM services WHERE is_super = 1 ORDER BY rowid LIMIT 1",
                [],
                row_service,
            )
            .optional()
            .map_err(db)
        })
    }

    fn services(&self) -> Result<Vec<Service>, StoreError> {
        self.with(|c| {
            let mut st = c
                .prepare("SELECT id, name, key, is_super FROM services ORDER BY rowid")
                .map_err(db)?;
            let rows = st.query_map([], row_service).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }

    fn delete_service(&self, id: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            let rooms: Vec<String> = {
                let mut st = tx
                    .prepare("SELECT id FROM rooms WHERE service_id = ?1 ORDER BY seq")
                    .map_err(db)?;
                let rows = st.query_map([id], |r| r.get(0)).map_err(db)?;
                rows.collect::<Result<_, _>>().map_err(db)?
            };
            let n = tx
                .execute("DELETE FROM services WHERE id = ?1", [id])
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok((n > 0).then_some(rooms))
        })
    }

    fn create_room(&self, service: &str, room: &Room) -> Result<(), StoreError> {
        let json = room_json(room)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO rooms (id, service_id, config) VALUES (?1, ?2, ?3)",
                params![room.id, service, json],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn room(&self, service: &str, id: &str) -> Result<Option<Room>, StoreError> {
        let row: Option<String> = self.with(|c| {
            c.query_row(
                "SELECT config FROM rooms WHERE id = ?1 AND service_id = ?2",
                params![id, service],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)
        })?;
        row.map(|cfg| room_from(id.to_string(), &cfg)).transpose()
    }

    fn room_by_id(&self, id: &str) -> Result<Option<Room>, StoreError> {
        let row: Option<String> = self.with(|c| {
            c.query_row("SELECT config FROM rooms WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db)
        })?;
        row.map(|cfg| room_from(id.to_string(), &cfg)).transpose()
    }

    fn rooms(&self, service: &str, page: Option<Page>) -> Result<(Vec<Room>, u64), StoreError> {
        let (rows, total) = self.with(|c| {
            let total: i64 = c
                .query_row("SELECT COUNT(*) FROM rooms WHERE service_id = ?1", [service], |r| r.get(0))
                .map_err(db)?;
            let (limit, offset) = match page {
                Some(p) => (
                    i64::try_from(p.per_page).unwrap_or(i64::MAX),
                    i64::try_from(p.page.saturating_sub(1).saturating_mul(p.per_page)).unwrap_or(i64::MAX),
                ),
                None => (-1, 0),
            };
            let mut st = c
                .prepare("SELECT id, config FROM rooms WHERE service_id = ?1 ORDER BY seq LIMIT ?2 OFFSET ?3")
                .map_err(db)?;
            let rows = st
                .query_map(params![service, limit, offset], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(db)?;
            let rows: Vec<(String, String)> = rows.collect::<Result<_, _>>().map_err(db)?;
            Ok((rows, total.max(0) as u64))
        })?;
        let rooms = rows
            .into_iter()
            .map(|(id, cfg)| room_from(id, &cfg))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((rooms, total))
    }

    fn room_ids(&self, service: &str) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let mut st = c
                .prepare("SELECT id FROM rooms WHERE service_id = ?1 ORDER BY seq")
                .map_err(db)?;
            let rows = st.query_map([service], |r| r.get(0)).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
    }

    fn update_room(&self, service: &str, room: &Room) -> Result<bool, StoreError> {
        let json = room_json(room)?;
        self.with(|c| {
            let n = c
                .execute(
                    "UPDATE rooms SET config = ?1 WHERE id = ?2 AND service_id = ?3",
                    params![json, room.id, service],
                )
                .map_err(db)?;
            Ok(n > 0)
        })
    }

    fn delete_room(&self, service: &str, id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c
                .execute(
                    "DELETE FROM rooms WHERE id = ?1 AND service_id = ?2",
                    params![id, service],
                )
                .map_err(db)?;
            Ok(n > 0)
        })
    }

    fn count_rooms(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            let n: i64 = c
                .query_row("SELECT COUNT(*) FROM rooms", [], |r| r.get(0))
                .map_err(db)?;
            Ok(n.max(0) as u64)
        })
    }

    fn insert_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        let pref =
            serde_json::to_string(&t.preference).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.with(|c| {
            c.execute(
                "INSERT INTO tokens (id, service_id, room_id, user, role, preference, host, secure, created_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![t.id, t.service_id, t.room_id, t.user, t.role, pref, t.host, t.secure as i64, t.created_ms, t.expires_ms],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn redeem_token(&self, id: &str, now_ms: i64) -> Result<Redeemed, StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            type Row = (String, String, String, String, String, String, i64, i64, i64, Option<i64>);
            let row: Option<Row> = tx
                .query_row(
                    "SELECT service_id, room_id, user, role, preference, host, secure, created_ms, expires_ms, used_ms
                     FROM tokens WHERE id = ?1",
                    [id],
                    |r| {
                        Ok((
                            r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?,
                            r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?,
                        ))
                    },
                )
                .optional()
                .map_err(db)?;
            let Some((service_id, room_id, user, role, pref, host, secure, created_ms, expires_ms, used_ms)) = row else {
                return Ok(Redeemed::Unknown);
            };
            if used_ms.is_some() {
                return Ok(Redeemed::AlreadyUsed);
            }
            tx.execute("UPDATE tokens SET used_ms = ?1 WHERE id = ?2", params![now_ms, id])
                .map_err(db)?;
            tx.commit().map_err(db)?;
            if now_ms > expires_ms {
                return Ok(Redeemed::Expired);
            }
            let preference: Preference = serde_json::from_str(&pref).unwrap_or_default();
            Ok(Redeemed::Granted(Box::new(TokenRecord {
                id: id.to_string(),
                service_id,
                room_id,
                user,
                role,
                preference,
                host,
                secure: secure != 0,
                created_ms,
                expires_ms,
            })))
        })
    }

    fn purge_tokens(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute("DELETE FROM tokens WHERE expires_ms < ?1", [before_ms])
                .map_err(db)
        })
    }

    fn secret(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        self.with(|c| {
            let fresh: [u8; 32] = rand::random();
            c.execute(
                "INSERT OR IGNORE INTO secrets (name, value) VALUES (?1, ?2)",
                params![name, fresh.to_vec()],
            )
            .map_err(db)?;
            c.query_row("SELECT value FROM secrets WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .map_err(db)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(id: &str, name: &str) -> Service {
        Service {
            id: id.into(),
            name: name.into(),
            key: "k".into(),
            is_super: false,
        }
    }

    fn room(id: &str, name: &str) -> Room {
        Room {
            id: id.into(),
            config: RoomConfig {
                name: name.into(),
                ..RoomConfig::default()
            },
        }
    }

    fn token(id: &str, room: &str, expires_ms: i64) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            service_id: "s1".into(),
            room_id: room.into(),
            user: "u".into(),
            role: "presenter".into(),
            preference: Preference::default(),
            host: "localhost:8080".into(),
            secure: false,
            created_ms: 0,
            expires_ms,
        }
    }

    #[test]
    fn rooms_belong_to_their_service_and_page_in_order() {
        let s = SqliteStore::in_memory().unwrap();
        s.create_service(&svc("s1", "one")).unwrap();
        s.create_service(&svc("s2", "two")).unwrap();
        assert!(matches!(
            s.create_service(&svc("s3", "one")),
            Err(StoreError::Conflict(_))
        ));
        for i in 0..5 {
            s.create_room("s1", &room(&format!("r{i}"), &format!("room {i}")))
                .unwrap();
        }
        s.create_room("s2", &room("x", "other")).unwrap();
        let (page, total) = s
            .rooms(
                "s1",
                Some(Page {
                    page: 2,
                    per_page: 2,
                }),
            )
            .unwrap();
        assert_eq!(total, 5);
        assert_eq!(
            page.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["r2", "r3"]
        );
        let (all, _) = s.rooms("s1", None).unwrap();
        assert_eq!(all.len(), 5);
        assert!(
            s.room("s2", "r0").unwrap().is_none(),
            "another service's room is invisible"
        );
        assert!(!s.delete_room("s2", "r0").unwrap());
        let mut r = s.room("s1", "r0").unwrap().unwrap();
        r.config.participant_limit = 9;
        assert!(s.update_room("s1", &r).unwrap());
        assert_eq!(
            s.room("s1", "r0")
                .unwrap()
                .unwrap()
                .config
                .participant_limit,
            9
        );
        assert_eq!(s.delete_service("s1").unwrap().unwrap().len(), 5);
        assert_eq!(s.count_rooms().unwrap(), 1);
        assert!(s.delete_service("s1").unwrap().is_none());
    }

    #[test]
    fn tokens_redeem_once_and_expire() {
        let s = SqliteStore::in_memory().unwrap();
        s.create_service(&svc("s1", "one")).unwrap();
        s.create_room("s1", &room("r", "r")).unwrap();
        s.insert_token(&token("t1", "r", 1000)).unwrap();
        s.insert_token(&token("t2", "r", 1000)).unwrap();
        assert!(
            matches!(s.redeem_token("t1", 500).unwrap(), Redeemed::Granted(t) if t.room_id == "r")
        );
        assert_eq!(s.redeem_token("t1", 600).unwrap(), Redeemed::AlreadyUsed);
        assert_eq!(s.redeem_token("t2", 1001).unwrap(), Redeemed::Expired);
        assert_eq!(s.redeem_token("t2", 1002).unwrap(), Redeemed::AlreadyUsed);
        assert_eq!(s.redeem_token("nope", 0).unwrap(), Redeemed::Unknown);
        assert_eq!(s.purge_tokens(2000).unwrap(), 2);
        // Deleting a room takes its tokens with it.
        s.insert_token(&token("t3", "r", 5000)).unwrap();
        s.delete_room("s1", "r").unwrap();
        assert_eq!(s.redeem_token("t3", 0).unwrap(), Redeemed::Unknown);
    }

    #[test]
    fn secrets_are_stable() {
        let s = SqliteStore::in_memory().unwrap();
        let a = s.secret("token").unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(s.secret("token").unwrap(), a);
        assert_ne!(s.secret("other").unwrap(), a);
    }

    #[test]
    fn reopens_with_data_and_refuses_garbage_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let s = SqliteStore::open(&path, Synchronous::Normal).unwrap();
            s.create_service(&svc("s1", "one")).unwrap();
            s.create_room("s1", &room("r", "kept")).unwrap();
        }
        let s = SqliteStore::open(&path, Synchronous::Full).unwrap();
        assert_eq!(s.room("s1", "r").unwrap().unwrap().config.name, "kept");
        let bad = dir.path().join("garbage");
        std::fs::write(&bad, vec![0x5a; 8192]).unwrap();
        assert!(matches!(
            SqliteStore::open(&bad, Synchronous::Normal),
            Err(StoreError::Open { .. })
        ));
    }
}
