//! The list query language of SPEC §2, written once and used by every resource: parse, whitelist,
//! compile to SeaORM conditions, fetch a page. Kernel floor: no HTTP types (`crate::http::list` makes
//! [`ListQuery`] an actix extractor).
//!
//! `?filter=field:op:value` (repeatable, ANDed; split on the first two colons only),
//! `?sort=field:asc|desc` (repeatable; `id` always breaks ties), `?skip=` and `?limit=` (default 50, max
//! 1000). Each resource passes its whitelist ([`Field`]); anything not on it is a 400 naming the field.
//! Values are coerced strictly to the field's type. The caller supplies the `Select` already scoped to
//! the tenant, so the account predicate is always ANDed in and can only be narrowed.

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, Order, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    Select, Value,
};
use uuid::Uuid;

pub use super::limits::*;
use crate::error::{AppError, AppResult};

/// A page of items plus the count that matched.
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub skip: u64,
    pub limit: u64,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), total: self.total, skip: self.skip, limit: self.limit }
    }
}

pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 1000;
/// Offsets beyond this are refused (they would also overflow a signed 64-bit OFFSET in the database).
pub const MAX_SKIP: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    IContains,
    StartsWith,
    EndsWith,
    Like,
    ILike,
    In,
    Range,
    IsNull,
    IsNotNull,
}

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "lt" => Op::Lt,
            "le" => Op::Le,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "contains" => Op::Contains,
            "icontains" => Op::IContains,
            "startswith" => Op::StartsWith,
            "endswith" => Op::EndsWith,
            "like" => Op::Like,
            "ilike" => Op::ILike,
            "in" => Op::In,
            "range" => Op::Range,
            "is_null" => Op::IsNull,
            "is_not_null" => Op::IsNotNull,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Lt => "lt",
            Op::Le => "le",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::StartsWith => "startswith",
            Op::EndsWith => "endswith",
            Op::Like => "like",
            Op::ILike => "ilike",
            Op::In => "in",
            Op::Range => "range",
            Op::IsNull => "is_null",
            Op::IsNotNull => "is_not_null",
        }
    }

    fn takes_value(self) -> bool {
        !matches!(self, Op::IsNull | Op::IsNotNull)
    }
}

/// The type of a filterable field; decides coercion and which operators apply.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Uuid,
    Text,
    Bool,
    Int,
    Timestamp,
    /// Text restricted to these values.
    Enum(&'static [&'static str]),
}

impl Kind {
    fn allows(self, op: Op) -> bool {
        use Op::*;
        match self {
            Kind::Text => true,
            Kind::Bool => matches!(op, Eq | Ne | IsNull | IsNotNull),
            Kind::Uuid | Kind::Enum(_) => matches!(op, Eq | Ne | In | IsNull | IsNotNull),
            Kind::Int | Kind::Timestamp => matches!(op, Eq | Ne | Lt | Le | Gt | Ge | In | Range | IsNull | IsNotNull),
        }
    }

    /// Coerces one raw value strictly to this kind.
    pub fn coerce(self, field: &str, raw: &str) -> AppResult<Value> {
        let fail = |what: &str| AppError::bad_request(format!("filter `{field}`: `{raw}` is not {what}"));
        Ok(match self {
            Kind::Text => Value::from(raw.to_string()),
            Kind::Bool => match raw {
                "true" => Value::from(true),
                "false" => Value::from(false),
                _ => return Err(fail("a boolean (true|false)")),
            },
            Kind::Int => Value::from(raw.parse::<i64>().map_err(|_| fail("an integer"))?),
            Kind::Uuid => Value::from(Uuid::parse_str(raw).map_err(|_| fail("a UUID"))?),
            Kind::Timestamp => {
                Value::from(parse_timestamp(raw).ok_or_else(|| fail("an RFC 3339 timestamp or YYYY-MM-DD date"))?)
            }
            Kind::Enum(allowed) => {
                if !allowed.contains(&raw) {
                    return Err(fail(&format!("one of {}", allowed.join(", "))));
                }
                Value::from(raw.to_string())
            }
        })
    }
}

pub fn parse_timestamp(raw: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}

/// One whitelisted field of a resource.
#[derive(Debug, Clone, Copy)]
pub struct Field<C> {
    pub name: &'static str,
    pub column: C,
    pub kind: Kind,
    pub sortable: bool,
}

impl<C> Field<C> {
    pub const fn new(name: &'static str, column: C, kind: Kind) -> Self {
        Field { name, column, kind, sortable: false }
    }
    pub const fn sortable(name: &'static str, column: C, kind: Kind) -> Self {
        Field { name, column, kind, sortable: true }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub field: String,
    pub op: Op,
    pub value: Option<String>,
}

impl Filter {
    /// Parses `field:op:value`, splitting on the first two colons only.
    pub fn parse(raw: &str) -> AppResult<Filter> {
        if raw.contains('\0') {
            return Err(AppError::bad_request("filter: NUL characters are not allowed"));
        }
        let mut parts = raw.splitn(3, ':');
        let field = parts.next().unwrap_or_default();
        let op_raw = parts.next();
        let value = parts.next();
        if field.is_empty() {
            return Err(AppError::bad_request(format!("filter `{raw}`: expected field:op:value")));
        }
        let op_raw = op_raw.ok_or_else(|| AppError::bad_request(format!("filter `{raw}`: expected field:op:value")))?;
        let op = Op::parse(op_raw)
            .ok_or_else(|| AppError::bad_request(format!("filter `{field}`: unknown operator `{op_raw}`")))?;
        match (op.takes_value(), value) {
            (true, None) => Err(AppError::bad_request(format!("filter `{field}`: operator `{op_raw}` needs a value"))),
            (false, Some(v)) if !v.is_empty() => {
                Err(AppError::bad_request(format!("filter `{field}`: operator `{op_raw}` takes no value")))
            }
            (true, Some(v)) => Ok(Filter { field: field.to_string(), op, value: Some(v.to_string()) }),
            (false, _) => Ok(Filter { field: field.to_string(), op, value: None }),
        }
    }

    /// How many values the term binds: each of an `in` list, two for `range`, none for the null tests.
    pub fn value_count(&self) -> usize {
        match (self.op, self.value.as_deref()) {
            (_, None) => 0,
            (Op::In, Some(v)) => v.split(',').count(),
            (Op::Range, _) => 2,
            _ => 1,
        }
    }
}

/// Parsed list parameters (`crate::http::list` makes it an extractor: handlers take `q: ListQuery`).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filters: Vec<Filter>,
    pub sorts: Vec<(String, Order)>,
    pub skip: u64,
    pub limit: u64,
    /// Other query parameters, for resource-specific options.
    pub extra: Vec<(String, String)>,
}

impl ListQuery {
    pub fn parse(query_string: &str) -> AppResult<ListQuery> {
        let mut q = ListQuery { limit: DEFAULT_LIMIT, ..Default::default() };
        for (k, v) in form_urlencoded::parse(query_string.as_bytes()) {
            match k.as_ref() {
                "filter" => q.filters.push(Filter::parse(&v)?),
                "sort" => {
                    let (field, dir) = v.split_once(':').unwrap_or((&v, "asc"));
                    let order = match dir {
                        "asc" => Order::Asc,
                        "desc" => Order::Desc,
                        _ => {
                            return Err(AppError::bad_request(format!(
                                "sort `{field}`: direction must be asc or desc"
                            )));
                        }
                    };
                    if field.is_empty() {
                        return Err(AppError::bad_request("sort: expected field:asc|desc"));
                    }
                    if q.sorts.len() == MAX_SORT_KEYS {
                        return Err(too_complex(format!("at most {MAX_SORT_KEYS} sort keys per request")));
                    }
                    q.sorts.push((field.to_string(), order));
                }
                "skip" => {
                    let skip: u64 =
                        v.parse().map_err(|_| AppError::bad_request("skip must be a non-negative integer"))?;
                    if skip > MAX_SKIP {
                        return Err(AppError::bad_request(format!(
                            "skip must be at most {MAX_SKIP}; use filters (or the cursor where offered) to go deeper"
                        )));
                    }
                    q.skip = skip;
                }
                "limit" => {
                    let limit: u64 =
                        v.parse().map_err(|_| AppError::bad_request("limit must be a positive integer"))?;
                    if limit == 0 || limit > MAX_LIMIT {
                        return Err(AppError::bad_request(format!("limit must be between 1 and {MAX_LIMIT}")));
                    }
                    q.limit = limit;
                }
                "q" if v.chars().count() > MAX_SEARCH_LENGTH => {
                    return Err(too_complex(format!("q: at most {MAX_SEARCH_LENGTH} characters")));
                }
                "q" if v.contains('\0') => return Err(AppError::bad_request("q: NUL characters are not allowed")),
                _ => q.extra.push((k.into_owned(), v.into_owned())),
            }
        }
        check_filter_limits(&q.filters)?;
        Ok(q)
    }

    /// Applies filters, sorts and the `id` tie-break to a tenant-scoped select. Paging is applied by
    /// [`ListQuery::fetch`].
    pub fn apply<E>(
        &self,
        mut select: Select<E>,
        fields: &[Field<E::Column>],
        id: E::Column,
        default_sort: E::Column,
    ) -> AppResult<Select<E>>
    where
        E: EntityTrait,
    {
        for filter in &self.filters {
            let field = find_field(fields, &filter.field)?;
            select = select.filter(condition(field, filter)?);
        }
        self.sort(select, fields, id, default_sort)
    }

    /// Applies only the sorts and the `id` tie-break (for resources that compile their own filters).
    pub fn sort<E>(
        &self,
        mut select: Select<E>,
        fields: &[Field<E::Column>],
        id: E::Column,
        default_sort: E::Column,
    ) -> AppResult<Select<E>>
    where
        E: EntityTrait,
    {
        let find = |name: &str| find_field(fields, name);
        let mut last = Order::Desc;
        if self.sorts.is_empty() {
            select = select.order_by(default_sort, Order::Desc);
        }
        for (name, order) in &self.sorts {
            let field = find(name)?;
            if !field.sortable {
                return Err(AppError::bad_request(format!("field `{name}` is not sortable")));
            }
            select = select.order_by(field.column, order.clone());
            last = order.clone();
        }
        Ok(select.order_by(id, last))
    }

    /// How many rows `select` matches (its ordering dropped: sorting every match just to count it is
    /// waste).
    pub async fn count<E, C>(db: &C, mut select: Select<E>) -> AppResult<u64>
    where
        E: EntityTrait,
        E::Model: Sync,
        C: ConnectionTrait,
    {
        QueryTrait::query(&mut select).clear_order_by();
        Ok(select.count(db).await?)
    }

    /// How many rows `select` matches, counting no further than `cap + 1` (a bounded read however many
    /// match: for tables that grow without end, such as the message history).
    pub async fn count_up_to<E, C>(db: &C, mut select: Select<E>, cap: u64) -> AppResult<u64>
    where
        E: EntityTrait,
        C: ConnectionTrait,
    {
        use sea_orm::sea_query::{Alias, Expr, Query};
        let inner = QueryTrait::query(&mut select);
        inner.clear_order_by().clear_selects().expr(Expr::val(1)).limit(cap + 1);
        let stmt = Query::select()
            .expr_as(Expr::cust("COUNT(*)"), Alias::new("n"))
            .from_subquery(inner.to_owned(), Alias::new("counted"))
            .to_owned();
        let row = db.query_one(&stmt).await?;
        Ok(u64::try_from(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0)).unwrap_or(0))
    }

    /// Loads the requested page and the number of matches. The page is read one row longer than
    /// asked: when that row is not there (and the page is not past the end) the page tells the number
    /// itself — `skip` plus its rows — so only a list longer than the page, or an empty page after a
    /// skip, costs a count.
    pub async fn fetch<E, C>(&self, db: &C, select: Select<E>) -> AppResult<Page<E::Model>>
    where
        E: EntityTrait,
        E::Model: Sync,
        C: ConnectionTrait,
    {
        let mut items = select.clone().offset(self.skip).limit(self.limit + 1).all(db).await?;
        let total = match self.total_from_page(items.len()) {
            Some(total) => total,
            None => Self::count(db, select).await?,
        };
        items.truncate(self.limit as usize);
        Ok(Page { items, total, skip: self.skip, limit: self.limit })
    }

    /// The number of matches told by `rows`, the rows read for the page with one more than `limit`
    /// asked for (see [`Self::fetch`]).
    pub fn total_from_page(&self, rows: usize) -> Option<u64> {
        let rows = rows as u64;
        (rows <= self.limit && (self.skip == 0 || rows > 0)).then_some(self.skip + rows)
    }

    /// Loads the requested page of `select` whose matches the caller counted otherwise (`total`).
    pub async fn fetch_counted<E, C>(&self, db: &C, select: Select<E>, total: u64) -> AppResult<Page<E::Model>>
    where
        E: EntityTrait,
        E::Model: Sync,
        C: ConnectionTrait,
    {
        let items = select.offset(self.skip).limit(self.limit).all(db).await?;
        Ok(Page { items, total, skip: self.skip, limit: self.limit })
    }
}

pub fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The whitelisted field called `name`, or a 400 naming the allowed ones.
pub fn find_field<'a, C>(fields: &'a [Field<C>], name: &str) -> AppResult<&'a Field<C>> {
    fields.iter().find(|f| f.name == name).ok_or_else(|| {
        let known: Vec<&str> = fields.iter().map(|f| f.name).collect();
        AppError::bad_request(format!("field `{name}` cannot be used here; allowed: {}", known.join(", ")))
    })
}

/// The SQL condition of one filter on one whitelisted column.
pub fn condition<C: ColumnTrait>(field: &Field<C>, filter: &Filter) -> AppResult<Expr> {
    if !field.kind.allows(filter.op) {
        return Err(AppError::bad_request(format!(
            "filter `{}`: operator `{}` is not allowed on this field",
            field.name,
            filter.op.name()
        )));
    }
    let raw = filter.value.as_deref().unwrap_or_default();
    let col = field.column;
    let one = |v: &str| field.kind.coerce(field.name, v);
    let lower_col = || Expr::expr(Func::lower(Expr::col(col.as_column_ref())));
    Ok(match filter.op {
        Op::Eq => col.eq(one(raw)?),
        Op::Ne => col.ne(one(raw)?),
        Op::Lt => col.lt(one(raw)?),
        Op::Le => col.lte(one(raw)?),
        Op::Gt => col.gt(one(raw)?),
        Op::Ge => col.gte(one(raw)?),
        Op::Contains => col.like(LikeExpr::new(format!("%{}%", escape_like(raw))).escape('\\')),
        Op::StartsWith => col.like(LikeExpr::new(format!("{}%", escape_like(raw))).escape('\\')),
        Op::EndsWith => col.like(LikeExpr::new(format!("%{}", escape_like(raw))).escape('\\')),
        Op::IContains => {
            lower_col().like(LikeExpr::new(format!("%{}%", escape_like(&raw.to_lowercase()))).escape('\\'))
        }
        Op::Like => col.like(raw),
        Op::ILike => lower_col().like(raw.to_lowercase()),
        Op::In => {
            let values = raw.split(',').map(one).collect::<AppResult<Vec<Value>>>()?;
            col.is_in(values)
        }
        Op::Range => {
            let (from, to) = raw
                .split_once(',')
                .ok_or_else(|| AppError::bad_request(format!("filter `{}`: range needs `from,to`", field.name)))?;
            col.between(one(from)?, one(to)?)
        }
        Op::IsNull => col.is_null(),
        Op::IsNotNull => col.is_not_null(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The message of a 400, or a panic.
    pub(crate) fn bad(r: AppResult<impl std::fmt::Debug>) -> String {
        match r {
            Err(AppError::BadRequest { message, .. }) => message,
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn a_page_that_ends_early_tells_the_total() {
        let q = |qs: &str| ListQuery::parse(qs).unwrap();
        assert_eq!(q("limit=50").total_from_page(30), Some(30));
        assert_eq!(q("limit=50").total_from_page(50), Some(50));
        assert_eq!(q("limit=50").total_from_page(0), Some(0));
        assert_eq!(q("limit=50&skip=100").total_from_page(10), Some(110));
        // The row past the page is there: more may follow. An empty page after a skip may be past
        // the end.
        assert_eq!(q("limit=50").total_from_page(51), None);
        assert_eq!(q("limit=50&skip=100").total_from_page(0), None);
    }

    #[test]
    fn splits_on_the_first_two_colons_only() {
        let f = Filter::parse("created_at:ge:2026-03-01T09:00:00Z").unwrap();
        assert_eq!(f.field, "created_at");
        assert_eq!(f.op, Op::Ge);
        assert_eq!(f.value.as_deref(), Some("2026-03-01T09:00:00Z"));
    }

    #[test]
    fn every_operator_parses() {
        for (op, expected) in [
            ("eq", Op::Eq),
            ("ne", Op::Ne),
            ("lt", Op::Lt),
            ("le", Op::Le),
            ("gt", Op::Gt),
            ("ge", Op::Ge),
            ("contains", Op::Contains),
            ("icontains", Op::IContains),
            ("startswith", Op::StartsWith),
            ("endswith", Op::EndsWith),
            ("like", Op::Like),
            ("ilike", Op::ILike),
            ("in", Op::In),
            ("range", Op::Range),
        ] {
            assert_eq!(Filter::parse(&format!("name:{op}:x")).unwrap().op, expected);
        }
        assert_eq!(Filter::parse("name:is_null").unwrap().op, Op::IsNull);
        assert_eq!(Filter::parse("name:is_not_null").unwrap().op, Op::IsNotNull);
        assert_eq!(Filter::parse("name:is_null:").unwrap().value, None);
    }

    #[test]
    fn malformed_filters_are_400s() {
        assert!(bad(Filter::parse("name")).contains("field:op:value"));
        assert!(bad(Filter::parse(":eq:x")).contains("field:op:value"));
        assert!(bad(Filter::parse("name:between:x")).contains("unknown operator"));
        assert!(bad(Filter::parse("name:eq")).contains("needs a value"));
        assert!(bad(Filter::parse("name:is_null:x")).contains("takes no value"));
    }

    #[test]
    fn values_coerce_strictly() {
        assert_eq!(Kind::Bool.coerce("f", "true").unwrap(), Value::from(true));
        assert!(bad(Kind::Bool.coerce("f", "yes")).contains("boolean"));
        assert!(bad(Kind::Bool.coerce("f", "1")).contains("boolean"));
        assert_eq!(Kind::Int.coerce("f", "-12").unwrap(), Value::from(-12i64));
        assert!(bad(Kind::Int.coerce("f", "1.5")).contains("integer"));
        assert!(Kind::Uuid.coerce("f", "0190f7a0-0000-7000-8000-000000000000").is_ok());
        assert!(bad(Kind::Uuid.coerce("f", "abc")).contains("UUID"));
        assert!(Kind::Timestamp.coerce("f", "2026-03-01T09:00:00Z").is_ok());
        assert!(Kind::Timestamp.coerce("f", "2026-03-01T12:00:00+03:00").is_ok());
        assert!(Kind::Timestamp.coerce("f", "2026-03-01").is_ok());
        assert!(bad(Kind::Timestamp.coerce("f", "2026-13-01")).contains("RFC 3339"));
        assert!(bad(Kind::Timestamp.coerce("f", "yesterday")).contains("RFC 3339"));
        assert!(Kind::Enum(&["a", "b"]).coerce("f", "a").is_ok());
        assert!(bad(Kind::Enum(&["a", "b"]).coerce("f", "c")).contains("one of a, b"));
        assert_eq!(Kind::Text.coerce("f", "x:y").unwrap(), Value::from("x:y".to_string()));
    }

    #[test]
    fn timestamps_normalise_to_utc() {
        assert_eq!(parse_timestamp("2026-03-01T12:00:00+03:00").unwrap().to_rfc3339(), "2026-03-01T09:00:00+00:00");
        assert_eq!(parse_timestamp("2026-03-01").unwrap().to_rfc3339(), "2026-03-01T00:00:00+00:00");
    }

    #[test]
    fn operators_are_checked_against_the_kind() {
        assert!(Kind::Text.allows(Op::IContains));
        assert!(!Kind::Bool.allows(Op::Lt));
        assert!(!Kind::Uuid.allows(Op::Contains));
        assert!(Kind::Timestamp.allows(Op::Range));
        assert!(!Kind::Timestamp.allows(Op::Like));
        assert!(!Kind::Enum(&["a"]).allows(Op::StartsWith));
    }

    #[test]
    fn paging_defaults_and_limits() {
        let q = ListQuery::parse("").unwrap();
        assert_eq!((q.skip, q.limit), (0, DEFAULT_LIMIT));
        let q =
            ListQuery::parse("skip=20&limit=1000&sort=name:desc&sort=created_at&filter=a:eq:1&filter=b:is_null&q=x")
                .unwrap();
        assert_eq!((q.skip, q.limit), (20, 1000));
        assert_eq!(q.sorts, vec![("name".into(), Order::Desc), ("created_at".into(), Order::Asc)]);
        assert_eq!(q.filters.len(), 2);
        assert_eq!(q.extra, vec![("q".into(), "x".into())]);
        assert!(bad(ListQuery::parse("limit=1001")).contains("between 1 and 1000"));
        assert!(bad(ListQuery::parse("limit=0")).contains("between"));
        assert!(bad(ListQuery::parse("limit=ten")).contains("limit"));
        assert!(bad(ListQuery::parse("skip=-1")).contains("skip"));
        assert!(bad(ListQuery::parse("skip=18446744073709551615")).contains("at most"));
        assert_eq!(ListQuery::parse("skip=1000000000").unwrap().skip, MAX_SKIP);
        assert!(bad(ListQuery::parse("sort=name:up")).contains("asc or desc"));
        // URL-encoded values keep their colons and plus signs.
        let q = ListQuery::parse("filter=created_at%3Age%3A2026-03-01T09%3A00%3A00%2B03%3A00").unwrap();
        assert_eq!(q.filters[0].value.as_deref(), Some("2026-03-01T09:00:00+03:00"));
    }

    #[test]
    fn like_patterns_escape_wildcards_for_contains() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
    }
}
