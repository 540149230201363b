//! What "nothing corrupted" means, checked in SQL on the cluster: whole version chains,
//! an index equal to a rebuild, and PostgreSQL's own `amcheck` over heaps and B-trees.

use crate::cluster::Cluster;

const INDEX_TABLES: [&str; 6] = [
    "search_token",
    "search_string",
    "search_date",
    "search_quantity",
    "search_reference",
    "search_uri",
];

/// Every resource's versions are 1..=n with no gap, the current row is version n (with
/// the same deletion state), and no version row exists without its resource.
pub fn assert_versions_whole(cluster: &Cluster, database: &str) {
    let broken_chains = cluster.sql(
        database,
        "SELECT count(*) FROM (SELECT resource_type, id, count(*) AS n, min(version_id) AS lo, \
         max(version_id) AS hi FROM resource_versions GROUP BY 1, 2) chains \
         WHERE lo <> 1 OR hi <> n",
    );
    assert_eq!(broken_chains, "0", "version chains with gaps");
    let mismatched = cluster.sql(
        database,
        "SELECT count(*) FROM resources r WHERE NOT EXISTS (SELECT 1 FROM resource_versions v \
         WHERE v.resource_type = r.resource_type AND v.id = r.id AND v.version_id = r.version_id \
         AND v.deleted = r.deleted AND v.content IS NOT DISTINCT FROM r.content)",
    );
    assert_eq!(
        mismatched, "0",
        "current rows that are not their last version"
    );
    let orphans = cluster.sql(
        database,
        "SELECT count(*) FROM resource_versions v LEFT JOIN resources r \
         ON r.resource_type = v.resource_type AND r.id = v.id \
         WHERE r.id IS NULL OR v.version_id > r.version_id",
    );
    assert_eq!(orphans, "0", "versions beyond their resource's current one");
}

/// A digest of every index row (all six tables), to compare with a rebuild.
pub fn index_fingerprint(cluster: &Cluster, database: &str) -> String {
    INDEX_TABLES
        .iter()
        .map(|table| {
            cluster.sql(
                database,
                &format!(
                    "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t"
                ),
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `amcheck`: every table and TOAST table is free of corruption, and every B-tree index
/// is consistent and holds every heap tuple it should.
pub fn assert_indexes_intact(cluster: &Cluster, database: &str) {
    cluster.sql(database, "CREATE EXTENSION IF NOT EXISTS amcheck");
    let corrupt = cluster.sql(
        database,
        "SELECT count(*) FROM pg_class c, verify_heapam(c.oid) WHERE c.relkind IN ('r', 't', 'm') \
         AND c.relpersistence <> 't'",
    );
    assert_eq!(corrupt, "0", "verify_heapam found corruption");
    let checked = cluster.sql(
        database,
        "SELECT count(bt_index_check(c.oid, true)) FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam \
         WHERE a.amname = 'btree' AND c.relkind = 'i' AND c.relpersistence <> 't'",
    );
    assert!(
        checked.parse::<u32>().unwrap() > 50,
        "{checked} indexes checked"
    );
}

/// The marks (first identifier values) of every stored version.
pub fn stored_marks(cluster: &Cluster, database: &str) -> std::collections::HashSet<String> {
    cluster
        .sql(
            database,
            "SELECT content->'identifier'->0->>'value' FROM resource_versions WHERE content IS NOT NULL",
        )
        .lines()
        .map(str::to_string)
        .collect()
}
