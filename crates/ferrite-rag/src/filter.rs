//! Metadata filters, a small MongoDB-like language over a chunk's fields (its document's metadata plus
//! `id`, `source`, `format` and `title`), written as JSON:
//!
//! ```text
//! {"format": "rst"}                                   equality (any element, when the field is an array)
//! {"year": {"$gte": 2020, "$lt": 2024}}               $eq $ne $gt $gte $lt $lte $in $nin $exists $prefix
//! {"$or": [{"lang": "en"}, {"lang": "de"}]}           $and $or $not; several keys in one object = and
//! {"meta.author.name": "Ada"}                         dotted paths reach into nested objects
//! ```
//!
//! A filter is evaluated once per query over every chunk, giving the set of allowed chunks that both
//! retrievers then search within.

use serde_json::Value;

use crate::RagError;

#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Box<Filter>),
    Field { path: String, op: Op, value: Value },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Nin,
    Exists,
    Prefix,
}

fn bad(m: impl Into<String>) -> RagError {
    RagError::Filter(m.into())
}

impl Filter {
    /// Parse the JSON form above.
    pub fn parse(v: &Value) -> Result<Filter, RagError> {
        let Value::Object(map) = v else { return Err(bad(format!("a filter is a JSON object, not {v}"))) };
        let mut parts = Vec::new();
        for (k, val) in map {
            parts.push(match k.as_str() {
                "$and" | "$or" => {
                    let Value::Array(items) = val else { return Err(bad(format!("{k} takes an array of filters"))) };
                    let subs = items.iter().map(Filter::parse).collect::<Result<Vec<_>, _>>()?;
                    if k == "$and" { Filter::All(subs) } else { Filter::Any(subs) }
                }
                "$not" => Filter::Not(Box::new(Filter::parse(val)?)),
                op if op.starts_with('$') => return Err(bad(format!("unknown operator {op} at the top of a filter"))),
                path => match val {
                    Value::Object(ops) if ops.keys().all(|o| o.starts_with('$')) && !ops.is_empty() => {
                        let mut all = Vec::new();
                        for (o, arg) in ops {
                            let op = match o.as_str() {
                                "$eq" => Op::Eq,
                                "$ne" => Op::Ne,
                                "$gt" => Op::Gt,
                                "$gte" => Op::Gte,
                                "$lt" => Op::Lt,
                                "$lte" => Op::Lte,
                                "$in" => Op::In,
                                "$nin" => Op::Nin,
                                "$exists" => Op::Exists,
                                "$prefix" => Op::Prefix,
                                other => return Err(bad(format!("unknown operator {other} on {path:?}"))),
                            };
                            match op {
                                Op::In | Op::Nin if !arg.is_array() => return Err(bad(format!("{o} on {path:?} takes an array"))),
                                Op::Gt | Op::Gte | Op::Lt | Op::Lte if !(arg.is_number() || arg.is_string()) => {
                                    return Err(bad(format!("{o} on {path:?} compares numbers or strings")));
                                }
                                Op::Exists if !arg.is_boolean() => return Err(bad(format!("$exists on {path:?} takes true or false"))),
                                Op::Prefix if !arg.is_string() => return Err(bad(format!("$prefix on {path:?} takes a string"))),
                                _ => {}
                            }
                            all.push(Filter::Field { path: path.to_string(), op, value: arg.clone() });
                        }
                        if all.len() == 1 { all.pop().expect("one") } else { Filter::All(all) }
                    }
                    v => Filter::Field { path: path.to_string(), op: Op::Eq, value: v.clone() },
                },
            });
        }
        Ok(if parts.len() == 1 { parts.pop().expect("one") } else { Filter::All(parts) })
    }

    /// Whether a chunk whose fields `get` looks up passes.
    pub fn matches(&self, get: &dyn Fn(&str) -> Option<Value>) -> bool {
        match self {
            Filter::All(fs) => fs.iter().all(|f| f.matches(get)),
            Filter::Any(fs) => fs.iter().any(|f| f.matches(get)),
            Filter::Not(f) => !f.matches(get),
            Filter::Field { path, op, value } => {
                let field = get(path);
                match op {
                    Op::Exists => field.is_some() == value.as_bool().unwrap_or(true),
                    Op::Ne => !field.as_ref().is_some_and(|f| any_of(f, |x| equal(x, value))),
                    Op::Nin => {
                        !field.as_ref().is_some_and(|f| any_of(f, |x| value.as_array().is_some_and(|a| a.iter().any(|v| equal(x, v)))))
                    }
                    _ => field.as_ref().is_some_and(|f| {
                        any_of(f, |x| match op {
                            Op::Eq => equal(x, value),
                            Op::In => value.as_array().is_some_and(|a| a.iter().any(|v| equal(x, v))),
                            Op::Gt => compare(x, value).is_some_and(|o| o.is_gt()),
                            Op::Gte => compare(x, value).is_some_and(|o| o.is_ge()),
                            Op::Lt => compare(x, value).is_some_and(|o| o.is_lt()),
                            Op::Lte => compare(x, value).is_some_and(|o| o.is_le()),
                            Op::Prefix => x.as_str().zip(value.as_str()).is_some_and(|(s, p)| s.starts_with(p)),
                            _ => false,
                        })
                    }),
                }
            }
        }
    }
}

/// `test` on the value, or on any element of it when it is an array.
fn any_of(v: &Value, test: impl Fn(&Value) -> bool) -> bool {
    match v {
        Value::Array(items) => items.iter().any(&test) || test(v),
        _ => test(v),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// The value at a dotted `path` inside `v`.
pub fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, key| cur.get(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(filter: Value, doc: Value) -> bool {
        let f = Filter::parse(&filter).unwrap();
        f.matches(&|p| lookup(&doc, p).cloned())
    }

    #[test]
    fn operators() {
        let d = json!({"format": "rst", "year": 2021, "tags": ["a", "b"], "meta": {"author": "Ada"}});
        assert!(check(json!({"format": "rst"}), d.clone()));
        assert!(!check(json!({"format": "md"}), d.clone()));
        assert!(check(json!({"year": {"$gte": 2020, "$lt": 2022}}), d.clone()));
        assert!(!check(json!({"year": {"$gt": 2021}}), d.clone()));
        assert!(check(json!({"year": 2021.0}), d.clone()), "numbers compare as numbers");
        assert!(check(json!({"tags": "b"}), d.clone()), "array fields match any element");
        assert!(check(json!({"tags": {"$in": ["x", "a"]}}), d.clone()));
        assert!(check(json!({"tags": {"$nin": ["x"]}}), d.clone()));
        assert!(check(json!({"meta.author": "Ada"}), d.clone()));
        assert!(check(json!({"missing": {"$exists": false}}), d.clone()));
        assert!(check(json!({"missing": {"$ne": 1}}), d.clone()));
        assert!(check(json!({"$or": [{"format": "md"}, {"meta.author": {"$prefix": "A"}}]}), d.clone()));
        assert!(!check(json!({"$not": {"format": "rst"}}), d.clone()));
        assert!(!check(json!({"format": "rst", "year": 1999}), d), "several keys: and");
    }

    #[test]
    fn errors_are_clear() {
        for (f, want) in [
            (json!([1]), "JSON object"),
            (json!({"$xor": []}), "unknown operator $xor"),
            (json!({"a": {"$in": 3}}), "takes an array"),
            (json!({"a": {"$gt": [1]}}), "compares numbers or strings"),
            (json!({"a": {"$bogus": 1}}), "unknown operator $bogus"),
        ] {
            let e = Filter::parse(&f).unwrap_err().to_string();
            assert!(e.contains(want), "{f}: {e}");
        }
    }
}
