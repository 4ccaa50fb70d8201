//! Query plans of the gateway's hot queries on a seeded database.

/// The plans (`EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on PostgreSQL) of the server's hot
/// queries, built by the server's own query functions, against the database at `db_url`.
pub async fn explain_hot_queries(db_url: &str) -> anyhow::Result<String> {
    let connections = paybridge_server::db::connect(db_url).await?;
    let plans = paybridge_server::store::plans::explain(&connections.write).await?;
    connections.write.close().await.ok();
    Ok(plans)
}
