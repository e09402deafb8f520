//! The contact filter language: the SPEC §2 list filters over contact columns plus
//! `attributes.<key>` (typed: numbers compare as numbers, ISO dates as dates, `true`/`false` as booleans,
//! anything else as strings), `channel_identities.<type>`, `tags` and `group_id`/`groups` (membership),
//! and the `q=` text search. Used by the contact list, segments, group membership and bulk tagging by
//! filter, the export and the Directory — one compiler, so a filter means the same thing everywhere.

use sea_orm::sea_query::{Condition, Expr, ExprTrait, Func, LikeExpr, Query};
use sea_orm::{DbBackend, EntityName, Value};
use uuid::Uuid;

use super::entity::{contact, contact_tag, group_member};
use super::normalise::valid_key;
use crate::db::list::{self, Field, Filter, Kind, Op, escape_like, parse_timestamp};
use crate::error::{AppError, AppResult};

pub const CONTACT_FIELDS: &[Field<contact::Column>] = &[
    Field::new("account_id", contact::Column::AccountId, Kind::Uuid),
    Field::new("id", contact::Column::Id, Kind::Uuid),
    Field::sortable("first_name", contact::Column::FirstName, Kind::Text),
    Field::sortable("last_name", contact::Column::LastName, Kind::Text),
    Field::sortable("display_name", contact::Column::DisplayName, Kind::Text),
    Field::sortable("phone", contact::Column::Phone, Kind::Text),
    Field::sortable("email", contact::Column::Email, Kind::Text),
    Field::new(
        "preferred_channel",
        contact::Column::PreferredChannel,
        Kind::Enum(crate::domain::channel_type::CHANNEL_TYPES),
    ),
    Field::new("language", contact::Column::Language, Kind::Text),
    Field::new("timezone", contact::Column::Timezone, Kind::Text),
    Field::sortable("created_at", contact::Column::CreatedAt, Kind::Timestamp),
    Field::sortable("updated_at", contact::Column::UpdatedAt, Kind::Timestamp),
    Field::sortable("last_inbound_at", contact::Column::LastInboundAt, Kind::Timestamp),
];

/// Parses a body's `filter`: one string or an array of strings in the list filter syntax. Errors are 422
/// on `field` (a body is being validated, not a query string).
pub fn parse_body_filter(value: &serde_json::Value, field: &str) -> AppResult<Vec<Filter>> {
    let raw: Vec<&str> = match value {
        serde_json::Value::String(s) => vec![s.as_str()],
        serde_json::Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().ok_or_else(|| AppError::field(field, "must be a string or an array of strings")))
            .collect::<AppResult<_>>()?,
        _ => return Err(AppError::field(field, "must be a string or an array of strings")),
    };
    if raw.len() > list::MAX_FILTER_TERMS {
        return Err(AppError::field(
            field,
            format!("at most {} filter terms (got {})", list::MAX_FILTER_TERMS, raw.len()),
        ));
    }
    let filters = raw.iter().map(|s| Filter::parse(s)).collect::<AppResult<Vec<_>>>().map_err(as_422(field))?;
    list::check_filter_limits(&filters).map_err(as_422(field))?;
    Ok(filters)
}

/// Turns a 400 from the filter compiler into a 422 on `field`.
pub fn as_422(field: &str) -> impl Fn(AppError) -> AppError + '_ {
    move |e| match e {
        AppError::BadRequest { message, .. } => AppError::field(field, message),
        other => other,
    }
}

/// Compiles filters (ANDed) into one condition. Unknown fields, disallowed operators and values that do
/// not coerce are 400s; filters on attributes nobody has are allowed and match nothing.
pub fn compile(filters: &[Filter], backend: DbBackend) -> AppResult<Condition> {
    let mut all = Condition::all();
    for f in filters {
        all = all.add(compile_one(f, backend)?);
    }
    Ok(all)
}

fn compile_one(f: &Filter, backend: DbBackend) -> AppResult<Expr> {
    if let Some(key) = f.field.strip_prefix("attributes.") {
        if !valid_key(key) {
            return Err(AppError::bad_request(format!("filter `{}`: attribute keys match [a-z0-9_]+", f.field)));
        }
        return json_condition("attributes", key, f, backend, true);
    }
    if let Some(kind) = f.field.strip_prefix("channel_identities.") {
        if !crate::domain::channel_type::is_channel_type(kind) {
            return Err(AppError::bad_request(format!("filter `{}`: not a channel type", f.field)));
        }
        return json_condition("channel_identities", kind, f, backend, false);
    }
    match f.field.as_str() {
        "tags" => membership(f, contact_tag::Entity.table_name(), "contact_id", "tag_id"),
        "group_id" | "groups" => membership(f, group_member::Entity.table_name(), "contact_id", "group_id"),
        "opted_out_channels" => opted_out(f, backend),
        _ => list::condition(list::find_field(CONTACT_FIELDS, &f.field)?, f),
    }
}

/// `q=` text search over names, phone and e-mail (case-insensitive substring).
pub fn search(q: &str) -> Option<Condition> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let pattern = format!("%{}%", escape_like(&q.to_lowercase()));
    let mut any = Condition::any();
    // A phone number typed nationally (`0911 000 002`) still finds `+251911000002`: digits only, without
    // the trunk zero.
    let digits: String = q.chars().filter(char::is_ascii_digit).collect();
    let phone_like = q.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if phone_like && digits.len() >= 4 {
        let digits = digits.trim_start_matches('0');
        any = any.add(Expr::col((contact::Entity, contact::Column::Phone)).like(format!("%{digits}%")));
    }
    for col in [
        contact::Column::FirstName,
        contact::Column::LastName,
        contact::Column::DisplayName,
        contact::Column::Phone,
        contact::Column::Email,
    ] {
        any = any.add(
            Expr::expr(Func::lower(Expr::col((contact::Entity, col))))
                .like(LikeExpr::new(pattern.clone()).escape('\\')),
        );
    }
    Some(any)
}

fn uuids(f: &Filter) -> AppResult<Vec<Uuid>> {
    f.value
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(|v| {
            Uuid::parse_str(v.trim())
                .map_err(|_| AppError::bad_request(format!("filter `{}`: `{v}` is not a UUID", f.field)))
        })
        .collect()
}

/// `tags` / `group_id`: contacts with (eq/in) or without (ne) a membership; `is_null` = none at all.
fn membership(f: &Filter, table: &'static str, contact_col: &'static str, key_col: &'static str) -> AppResult<Expr> {
    let id = Expr::col((contact::Entity, contact::Column::Id));
    let sub = |ids: Option<Vec<Uuid>>| {
        let mut q = Query::select();
        q.column(sea_orm::sea_query::Alias::new(contact_col)).from(sea_orm::sea_query::Alias::new(table));
        if let Some(ids) = ids {
            q.and_where(Expr::col(sea_orm::sea_query::Alias::new(key_col)).is_in(ids));
        }
        q.to_owned()
    };
    Ok(match f.op {
        Op::Eq | Op::In => id.in_subquery(sub(Some(uuids(f)?))),
        Op::Ne => id.not_in_subquery(sub(Some(uuids(f)?))),
        Op::IsNull => id.not_in_subquery(sub(None)),
        Op::IsNotNull => id.in_subquery(sub(None)),
        _ => {
            return Err(AppError::bad_request(format!(
                "filter `{}`: operator `{}` is not allowed on this field (use eq, ne, in, is_null, is_not_null)",
                f.field,
                f.op.name()
            )));
        }
    })
}

/// `opted_out_channels:eq:sms` (opted out of sms) / `ne` (not opted out of it).
fn opted_out(f: &Filter, backend: DbBackend) -> AppResult<Expr> {
    let channel = f.value.as_deref().unwrap_or_default();
    if !matches!(f.op, Op::Eq | Op::Ne) {
        return Err(AppError::bad_request("filter `opted_out_channels`: use eq or ne with a channel type"));
    }
    if !crate::domain::channel_type::is_channel_type(channel) {
        return Err(AppError::bad_request(format!("filter `opted_out_channels`: `{channel}` is not a channel type")));
    }
    let has = opted_out_expr(channel, backend);
    Ok(if f.op == Op::Eq { has } else { has.not() })
}

/// True when the contact opted out of `channel_type`. Most contacts have no opt-outs: the empty-array
/// test settles them without looking inside the JSON.
pub fn opted_out_expr(channel_type: &str, backend: DbBackend) -> Expr {
    match backend {
        DbBackend::Postgres => Expr::cust_with_values(
            r#"("contacts"."opted_out_channels" <> '[]'::jsonb AND "contacts"."opted_out_channels" @> jsonb_build_array(CAST($1 AS text)))"#,
            [Value::from(channel_type.to_string())],
        ),
        _ => Expr::cust_with_values(
            r#"("contacts"."opted_out_channels" <> '[]' AND EXISTS (SELECT 1 FROM json_each("contacts"."opted_out_channels") WHERE json_each.value = ?))"#,
            [Value::from(channel_type.to_string())],
        ),
    }
}

/// Custom SQL is written with `?` markers; PostgreSQL's custom expressions number them (`$1`, `$2`, …),
/// and a bare `?` would be read as its jsonb key-exists operator.
fn placeholders(sql: &str, backend: DbBackend) -> String {
    if backend != DbBackend::Postgres {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// SQL fragments for one key of a JSON column, per backend.
struct JsonKey {
    backend: DbBackend,
    column: &'static str,
    key: String,
}

impl JsonKey {
    fn arg(&self) -> Value {
        match self.backend {
            DbBackend::Postgres => Value::from(self.key.clone()),
            _ => Value::from(format!("$.\"{}\"", self.key)),
        }
    }
    /// The value as text (strings, and for SQLite numbers as numbers).
    fn text(&self) -> String {
        match self.backend {
            DbBackend::Postgres => format!(r#"("contacts"."{}" ->> ?)"#, self.column),
            _ => format!(r#"json_extract("contacts"."{}", ?)"#, self.column),
        }
    }
    /// `number`, `string`, `boolean`, `null` or NULL (missing), normalised across backends.
    fn type_is(&self, kind: &str) -> String {
        match (self.backend, kind) {
            (DbBackend::Postgres, k) => format!(r#"jsonb_typeof("contacts"."{}" -> ?) = '{k}'"#, self.column),
            (_, "number") => format!(r#"json_type("contacts"."{}", ?) IN ('integer', 'real')"#, self.column),
            (_, "string") => format!(r#"json_type("contacts"."{}", ?) = 'text'"#, self.column),
            (_, "boolean") => format!(r#"json_type("contacts"."{}", ?) IN ('true', 'false')"#, self.column),
            (_, k) => format!(r#"json_type("contacts"."{}", ?) = '{k}'"#, self.column),
        }
    }
    fn number(&self) -> String {
        let cast = match self.backend {
            DbBackend::Postgres => format!("CAST({} AS double precision)", self.text()),
            _ => self.text(),
        };
        format!("(CASE WHEN {} THEN {cast} END)", self.type_is("number"))
    }
    fn looks_like_date(&self) -> String {
        match self.backend {
            DbBackend::Postgres => format!(r#"{} ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}'"#, self.text()),
            _ => format!("{} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'", self.text()),
        }
    }
}

/// Turns one raw filter value into the bound SQL value.
type Binder<'a> = Box<dyn Fn(&str) -> Value + 'a>;

#[derive(Clone, Copy, PartialEq)]
enum Typed {
    Number,
    Bool,
    Date,
    Text,
}

fn classify(values: &[&str]) -> Typed {
    if values.iter().all(|v| is_number(v)) {
        Typed::Number
    } else if values.iter().all(|v| *v == "true" || *v == "false") {
        Typed::Bool
    } else if values.iter().all(|v| parse_timestamp(v).is_some()) {
        Typed::Date
    } else {
        Typed::Text
    }
}

fn is_number(v: &str) -> bool {
    !v.is_empty()
        && v.parse::<f64>().is_ok_and(f64::is_finite)
        && v.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// A date value in the form stored attributes use, so text comparison orders it correctly: a date
/// stays `YYYY-MM-DD`, a timestamp becomes UTC `YYYY-MM-DDTHH:MM:SSZ`.
fn date_text(v: &str) -> String {
    if v.len() == 10 {
        v.to_string()
    } else {
        parse_timestamp(v).map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_else(|| v.to_string())
    }
}

fn json_condition(column: &'static str, key: &str, f: &Filter, backend: DbBackend, typed: bool) -> AppResult<Expr> {
    let k = JsonKey { backend, column, key: key.to_string() };
    let raw = f.value.as_deref().unwrap_or_default();
    let bad = |m: &str| AppError::bad_request(format!("filter `{}`: {m}", f.field));
    // Every fragment binds the key once per `?` it contains, then the comparison values.
    let with = |sql: String, extra: Vec<Value>| {
        let n = sql.matches('?').count() - extra.len();
        let mut values: Vec<Value> = (0..n).map(|_| k.arg()).collect();
        values.extend(extra);
        Expr::cust_with_values(placeholders(&sql, backend), values)
    };
    let values: Vec<&str> = match f.op {
        Op::In => raw.split(',').collect(),
        Op::Range => {
            let (a, b) = raw.split_once(',').ok_or_else(|| bad("range needs `from,to`"))?;
            vec![a, b]
        }
        Op::IsNull | Op::IsNotNull => vec![],
        _ => vec![raw],
    };
    let kind = if typed { classify(&values) } else { Typed::Text };
    let cmp = |op: Op| -> &'static str {
        match op {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            _ => ">=",
        }
    };
    let (target, guard, bind): (String, String, Binder<'_>) = match kind {
        Typed::Number => (k.number(), "1 = 1".into(), Box::new(|v: &str| Value::from(v.parse::<f64>().unwrap_or(0.0)))),
        Typed::Bool => (k.text(), k.type_is("boolean"), Box::new(|v: &str| bool_value(backend, v))),
        Typed::Date => (
            k.text(),
            format!("{} AND {}", k.type_is("string"), k.looks_like_date()),
            Box::new(|v: &str| Value::from(date_text(v))),
        ),
        Typed::Text => (k.text(), k.type_is("string"), Box::new(|v: &str| Value::from(v.to_string()))),
    };
    let like = |pattern: String, lower: bool| {
        let t = if lower { format!("lower({})", k.text()) } else { k.text() };
        with(format!("({} AND {t} LIKE ? ESCAPE '\\')", k.type_is("string")), vec![Value::from(pattern)])
    };
    Ok(match f.op {
        Op::IsNull => with(format!("({} IS NULL OR {})", k.text(), k.type_is("null")), vec![]),
        Op::IsNotNull => with(format!("({} IS NOT NULL AND NOT ({}))", k.text(), k.type_is("null")), vec![]),
        Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            if kind == Typed::Bool && !matches!(f.op, Op::Eq | Op::Ne) {
                return Err(bad("booleans compare with eq or ne only"));
            }
            with(format!("({guard} AND {target} {} ?)", cmp(f.op)), vec![bind(raw)])
        }
        Op::In => {
            let marks = vec!["?"; values.len()].join(", ");
            with(format!("({guard} AND {target} IN ({marks}))"), values.iter().map(|v| bind(v)).collect())
        }
        Op::Range => with(format!("({guard} AND {target} BETWEEN ? AND ?)"), vec![bind(values[0]), bind(values[1])]),
        Op::Contains => like(format!("%{}%", escape_like(raw)), false),
        Op::StartsWith => like(format!("{}%", escape_like(raw)), false),
        Op::EndsWith => like(format!("%{}", escape_like(raw)), false),
        Op::IContains => like(format!("%{}%", escape_like(&raw.to_lowercase())), true),
        Op::Like => like(raw.to_string(), false),
        Op::ILike => like(raw.to_lowercase(), true),
    })
}

/// How a JSON boolean reads as text: PostgreSQL's `->>` gives 'true'/'false', SQLite's json_extract 1/0.
fn bool_value(backend: DbBackend, v: &str) -> Value {
    match backend {
        DbBackend::Postgres => Value::from(v.to_string()),
        _ => Value::from(i64::from(v == "true")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_classified_for_typed_comparison() {
        assert!(classify(&["42"]) == Typed::Number);
        assert!(classify(&["-1.5", "3"]) == Typed::Number);
        assert!(classify(&["true"]) == Typed::Bool);
        assert!(classify(&["2026-01-15"]) == Typed::Date);
        assert!(classify(&["2026-01-15T10:00:00+03:00"]) == Typed::Date);
        assert!(classify(&["cohort-2"]) == Typed::Text);
        assert!(classify(&["42", "x"]) == Typed::Text);
        assert_eq!(date_text("2026-01-15T10:00:00+03:00"), "2026-01-15T07:00:00Z");
    }

    #[test]
    fn bad_filters_are_400s() {
        for raw in ["attributes.Bad:eq:1", "tags:contains:x", "tags:eq:nope", "nope:eq:1", "opted_out_channels:eq:fax"]
        {
            let f = Filter::parse(raw).unwrap();
            assert!(matches!(compile(&[f], DbBackend::Sqlite), Err(AppError::BadRequest { .. })), "{raw}");
        }
        let f = Filter::parse("attributes.done:lt:true").unwrap();
        assert!(compile(&[f], DbBackend::Postgres).is_err());
    }

    #[test]
    fn body_filters_accept_a_string_or_an_array_and_422_otherwise() {
        assert_eq!(parse_body_filter(&serde_json::json!("tags:in:x"), "filter").unwrap().len(), 1);
        assert_eq!(parse_body_filter(&serde_json::json!(["a:eq:1", "b:is_null"]), "filter").unwrap().len(), 2);
        assert!(matches!(parse_body_filter(&serde_json::json!(3), "filter"), Err(AppError::Validation(_))));
        assert!(matches!(parse_body_filter(&serde_json::json!(["a"]), "filter"), Err(AppError::Validation(_))));
    }
}
