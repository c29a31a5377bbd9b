//! Query results as CSV.

use serde_json::Value;

/// Renders query results as CSV: a header of `columns`, then one line per result. Cells that a
/// spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage return first) are prefixed
/// with `'`.
pub fn to_csv(columns: &[&str], results: &[Value]) -> String {
    let mut out = crate::csv_out::header_line(columns);
    for row in results {
        let mut line = crate::csv_out::CsvLine::new();
        for column in columns {
            match row.get(*column) {
                Some(Value::String(text)) => line.text(text),
                Some(Value::Null) | None => line.text(""),
                Some(other) => line.number(other),
            };
        }
        out.push_str(&line.finish());
    }
    out
}
