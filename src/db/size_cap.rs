//! `storage.max_size_mb`: a cap on the database file, set on each connection as SQLite's
//! `max_page_count` (the cap divided by the file's page size). A write that needs a page past
//! the cap fails with `SQLITE_FULL` ("database or disk is full"), exactly as on a full disk;
//! pages freed by deleted rows are reused first. The WAL file is not counted. SQLite never
//! lowers the limit below the file's current size: a cap under it holds the file where it is.

use sqlx::SqliteConnection;

/// SQLite's largest page count.
const SQLITE_MAX_PAGE_COUNT: u64 = 0xffff_fffe;

/// Sets the connection's `max_page_count` so that the database file stays within `max_bytes`;
/// without a cap, leaves the connection as it is.
pub(super) async fn apply(
    conn: &mut SqliteConnection,
    max_bytes: Option<u64>,
) -> Result<(), sqlx::Error> {
    let Some(max_bytes) = max_bytes else {
        return Ok(());
    };
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut *conn)
        .await?;
    let pages = max_pages(max_bytes, page_size);
    // A pragma takes no bound parameters; `pages` is a number this function computed.
    sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// How many pages of `page_size` bytes fit in `max_bytes`: at least one (zero would leave the
/// limit unchanged), at most SQLite's maximum.
fn max_pages(max_bytes: u64, page_size: i64) -> u64 {
    let page_size = u64::try_from(page_size).unwrap_or(0).max(512);
    (max_bytes / page_size).clamp(1, SQLITE_MAX_PAGE_COUNT)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
    use sqlx::{ConnectOptions, Connection};

    use super::*;

    #[test]
    fn the_cap_is_counted_in_pages_of_the_files_size() {
        assert_eq!(max_pages(1024 * 1024, 4096), 256);
        assert_eq!(max_pages(1024 * 1024, 65_536), 16);
        assert_eq!(max_pages(100, 4096), 1);
        assert_eq!(max_pages(u64::MAX, 4096), SQLITE_MAX_PAGE_COUNT);
        assert_eq!(max_pages(4096, 0), 8, "a nonsense page size counts as 512");
    }

    async fn open(path: &std::path::Path) -> SqliteConnection {
        SqliteConnectOptions::from_str("sqlite://")
            .unwrap()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .connect()
            .await
            .unwrap()
    }

    async fn insert(conn: &mut SqliteConnection, bytes: usize) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO blobs (body) VALUES (zeroblob(?))")
            .bind(i64::try_from(bytes).unwrap())
            .execute(conn)
            .await
            .map(|_| ())
    }

    fn is_full(err: &sqlx::Error) -> bool {
        err.as_database_error()
            .and_then(|db| db.code())
            .is_some_and(|code| code == "13")
    }

    #[tokio::test]
    async fn writes_past_the_cap_fail_as_a_full_disk_until_rows_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capped.db");
        let mut conn = open(&path).await;
        sqlx::query("CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        apply(&mut conn, Some(1024 * 1024)).await.unwrap();
        let mut rows = 0;
        let err = loop {
            match insert(&mut conn, 16 * 1024).await {
                Ok(()) => rows += 1,
                Err(err) => break err,
            }
            assert!(rows < 1000, "1 MiB never filled up");
        };
        assert!(is_full(&err), "{err}");
        assert!((40..64).contains(&rows), "{rows} rows of 16 KiB in 1 MiB");

        sqlx::query("DELETE FROM blobs WHERE id <= 10")
            .execute(&mut conn)
            .await
            .unwrap();
        insert(&mut conn, 16 * 1024)
            .await
            .expect("freed pages are reused");
        conn.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_cap_below_the_current_size_holds_the_file_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.db");
        let mut conn = open(&path).await;
        sqlx::query("CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        for _ in 0..40 {
            insert(&mut conn, 64 * 1024).await.unwrap();
        }
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();

        // 2.5 MB of rows, opened again with a 1 MiB cap: it opens and reads.
        let mut conn = open(&path).await;
        apply(&mut conn, Some(1024 * 1024)).await.unwrap();
        let limit: i64 = sqlx::query_scalar("PRAGMA max_page_count")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(limit, pages, "held at the current size");
        let err = insert(&mut conn, 64 * 1024).await.unwrap_err();
        assert!(is_full(&err), "{err}");
        sqlx::query("DELETE FROM blobs WHERE id <= 5")
            .execute(&mut conn)
            .await
            .unwrap();
        insert(&mut conn, 64 * 1024)
            .await
            .expect("space freed inside the file is used");
        conn.close().await.unwrap();
    }
}
