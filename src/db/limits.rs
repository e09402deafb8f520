//! Limits of the list query language, the same wherever it is accepted (query strings, body filters,
//! saved segments): the SPEC's, and ours that keep every statement within both databases' limits.

use super::list::{Filter, Op};
use crate::error::{AppError, AppResult};

/// Limits of the filter language (SPEC §2), checked wherever a filter enters (query strings, body
/// filters, saved segments). With [`MAX_FILTER_VALUES`] (ours, beyond the SPEC's) they keep every SQL
/// statement built from a filter within both databases' limits by construction: at most 50 terms × a
/// few key binds + 1,000 values bound, far below SQLite's 32,766 and PostgreSQL's 65,535 bound
/// variables, and 50 ANDed terms, far below either expression depth limit.
pub const MAX_FILTER_TERMS: usize = 50;
/// Values in one `in` list.
pub const MAX_IN_VALUES: usize = 1_000;
/// Values over all terms of one request (an `in` list counts each value, `range` two, others one).
pub const MAX_FILTER_VALUES: usize = 1_000;
/// Bytes of one term (`field:op:value`).
pub const MAX_TERM_LENGTH: usize = 4 * 1024;
/// `sort=` keys per request (`id` is always added as the last one).
pub const MAX_SORT_KEYS: usize = 5;
/// Characters of a `q=` text search.
pub const MAX_SEARCH_LENGTH: usize = 200;

/// The error code of a query over the limits above.
pub const QUERY_TOO_COMPLEX: &str = "query_too_complex";

pub(crate) fn too_complex(message: String) -> AppError {
    AppError::BadRequest { code: QUERY_TOO_COMPLEX, message }
}

/// Checks filters against the limits of the language (a 400 naming the limit; body filters make it
/// a 422 on their field).
pub fn check_filter_limits(filters: &[Filter]) -> AppResult<()> {
    if filters.len() > MAX_FILTER_TERMS {
        return Err(too_complex(format!(
            "at most {MAX_FILTER_TERMS} filter terms per request (got {})",
            filters.len()
        )));
    }
    let mut values = 0;
    for f in filters {
        let length = f.field.len() + f.op.name().len() + f.value.as_deref().map_or(0, str::len) + 2;
        if length > MAX_TERM_LENGTH {
            return Err(too_complex(format!(
                "filter `{}`: at most {MAX_TERM_LENGTH} bytes per filter term (got {length})",
                f.field
            )));
        }
        let n = f.value_count();
        if f.op == Op::In && n > MAX_IN_VALUES {
            return Err(too_complex(format!(
                "filter `{}`: at most {MAX_IN_VALUES} values in one `in` list (got {n})",
                f.field
            )));
        }
        values += n;
    }
    if values > MAX_FILTER_VALUES {
        return Err(too_complex(format!(
            "at most {MAX_FILTER_VALUES} filter values per request over all terms (got {values})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::list::ListQuery;
    use crate::db::list::tests::bad;

    #[test]
    fn limits_name_the_limit_they_hit() {
        let terms = |n: usize, term: &str| vec![Filter::parse(term).unwrap(); n];
        assert!(check_filter_limits(&terms(50, "a:eq:1")).is_ok());
        assert!(bad(check_filter_limits(&terms(51, "a:eq:1"))).contains("at most 50 filter terms"));
        let list = |n: usize| format!("a:in:{}", vec!["1"; n].join(","));
        assert!(check_filter_limits(&terms(1, &list(1000))).is_ok());
        assert!(bad(check_filter_limits(&terms(1, &list(1001)))).contains("at most 1000 values in one"));
        assert!(bad(check_filter_limits(&terms(2, &list(501)))).contains("at most 1000 filter values"));
        let long = format!("a:eq:{}", "x".repeat(4096));
        assert!(bad(check_filter_limits(&terms(1, &long))).contains("at most 4096 bytes"));
        assert!(bad(ListQuery::parse(&"sort=a&".repeat(6))).contains("at most 5 sort keys"));
        assert!(ListQuery::parse(&"sort=a&".repeat(5)).is_ok());
        assert!(bad(ListQuery::parse(&format!("q={}", "x".repeat(201)))).contains("200 characters"));
        assert!(bad(ListQuery::parse("filter=a:eq:x%00y")).contains("NUL"));
    }
}
