//! Multi-row inserts in a few fixed shapes. A multi-row `INSERT` is a different statement for every
//! row count, and each pooled connection keeps only so many prepared statements (sqlx: 100): a writer
//! whose batches hold 1 to 256 rows kept making the database parse and plan an insert again (measured
//! on PostgreSQL with `pg_stat_statements` under 64 concurrent sends: 1,249 plans for 2,781 executions
//! of the messages insert). Here a batch is cut into full chunks of the largest size and, for the
//! rest, powers of two (45 rows of at most 256 = 32 + 8 + 4 + 1): a few shapes a table (nine for
//! 256 rows at most, ten for 512), so every shape stays prepared on every connection.

use sea_orm::{ActiveModelTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryTrait, Statement};

/// The sizes `len` rows are cut into: `max` as often as it fits, then the rest by powers of two,
/// largest first. `max` should be a power of two itself (else the full chunks add one more shape).
pub fn sizes(len: usize, max: usize) -> impl Iterator<Item = usize> {
    let max = max.max(1);
    let full = std::iter::repeat_n(max, len / max);
    let rest = len % max;
    let bits = (0..usize::BITS).rev().map(|b| 1usize << b).filter(move |p| rest & p != 0);
    full.chain(bits)
}

/// Inserts `rows` (without reading anything back) in chunks of the sizes [`sizes`] gives.
pub async fn insert_all<A, C>(conn: &C, rows: impl IntoIterator<Item = A>, max: usize) -> Result<(), DbErr>
where
    A: ActiveModelTrait + Send,
    C: ConnectionTrait,
{
    for statement in insert_statements(conn.get_database_backend(), rows, max) {
        conn.execute_raw(statement).await?;
    }
    Ok(())
}

/// The statements of [`insert_all`], for a [`super::script::Script`].
pub fn insert_statements<A>(backend: DbBackend, rows: impl IntoIterator<Item = A>, max: usize) -> Vec<Statement>
where
    A: ActiveModelTrait + Send,
{
    let rows: Vec<A> = rows.into_iter().collect();
    let cut: Vec<usize> = sizes(rows.len(), max).collect();
    let mut rows = rows.into_iter();
    cut.into_iter()
        .map(|size| {
            let chunk: Vec<A> = rows.by_ref().take(size).collect();
            A::Entity::insert_many(chunk).build(backend)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::sizes;

    #[test]
    fn a_batch_is_cut_into_full_chunks_then_powers_of_two() {
        assert_eq!(sizes(45, 256).collect::<Vec<_>>(), vec![32, 8, 4, 1]);
        assert_eq!(sizes(600, 256).collect::<Vec<_>>(), vec![256, 256, 64, 16, 8]);
        assert_eq!(sizes(256, 256).collect::<Vec<_>>(), vec![256]);
        assert_eq!(sizes(1, 256).collect::<Vec<_>>(), vec![1]);
        assert_eq!(sizes(0, 256).count(), 0);
    }

    #[test]
    fn every_row_is_in_exactly_one_chunk_and_shapes_are_few() {
        let mut shapes = std::collections::BTreeSet::new();
        for len in 0..2000 {
            let cut: Vec<usize> = sizes(len, 256).collect();
            assert_eq!(cut.iter().sum::<usize>(), len, "{len}");
            shapes.extend(cut);
        }
        assert_eq!(shapes.len(), 9, "{shapes:?}");
    }
}
