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

/// The rows of a JSON list (none when it is not an array).
pub fn rows(v: &Value) -> &[Value] {
    v.as_array().map(|v| v.as_slice()).unwrap_or(&[])
}

/// Prints a list: as it came in JSON (raw values), else as a table of
/// `cols` over each row with the columns `derive` adds for display.
pub fn print_derived(
    fmt: OutputFormat,
    list: &Value,
    derive: impl Fn(&mut Value),
    cols: &[(&str, &str)],
) {
    if fmt == OutputFormat::Json {
        return print_list(fmt, rows(list), cols);
    }
    let shown: Vec<Value> = rows(list)
        .iter()
        .map(|r| {
            let mut r = r.clone();
            derive(&mut r);
            r
        })
        .collect();
    print_list(fmt, &shown, cols);
}

/// A count in short human form: `950`, `12.5k`, `400k`, `3.2M`.
pub fn human_count(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")];
    for (div, unit) in UNITS {
        if n >= div {
            return trim_num(n as f64 / div as f64) + unit;
        }
    }
    n.to_string()
}

/// A size given in MiB in binary human units: `512 MiB`, `2 GiB`, `1.5 TiB`.
pub fn human_mib(mib: u64) -> String {
    let units = ["MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = mib as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{} {}", trim_num(v), units[i])
}

fn trim_num(v: f64) -> String {
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    };
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_count(950), "950");
        assert_eq!(human_count(400_000), "400k");
        assert_eq!(human_count(12_500), "12.5k");
        assert_eq!(human_count(3_200_000), "3.2M");
        assert_eq!(human_mib(512), "512 MiB");
        assert_eq!(human_mib(2048), "2 GiB");
        assert_eq!(human_mib(1536 * 1024), "1.5 TiB");
        assert_eq!(human_mib(1 << 40), "1 EiB");
    }
}
