//! Table and JSON rendering.

use serde_json::Value;

use crate::OutputFormat;

/// Prints `rows` (JSON objects) as a table of `cols` (header, json pointer), or as JSON.
pub fn print_list(fmt: OutputFormat, rows: &[Value], cols: &[(&str, &str)]) {
    if fmt == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(rows).expect("json"));
        return;
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|(_, p)| cell(r.pointer(p))).collect())
        .collect();
    let mut widths: Vec<usize> = cols.iter().map(|(h, _)| h.len()).collect();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |vals: Vec<String>| {
        vals.iter()
            .enumerate()
            .map(|(i, v)| format!("{v:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!(
        "{}",
        line(cols.iter().map(|(h, _)| h.to_string()).collect())
    );
    for row in cells {
        println!("{}", line(row));
    }
}

/// Prints one object as `key  value` lines, or as JSON.
pub fn print_object(fmt: OutputFormat, v: &Value) {
    if fmt == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(v).expect("json"));
        return;
    }
    if let Some(o) = v.as_object() {
        let w = o.keys().map(|k| k.len()).max().unwrap_or(0);
        for (k, val) in o {
            println!("{k:<w$}  {}", cell(Some(val)));
        }
    } else {
        println!("{}", cell(Some(v)));
    }
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.iter().all(|x| x.is_string()) => a
            .iter()
            .filter_map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}
