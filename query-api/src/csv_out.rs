//! The one CSV writer of every export (logs, audit log, analytics): the `csv` crate's quoting, CRLF
//! line ends, and one guard against spreadsheet formula injection.
//!
//! A text cell that a spreadsheet would evaluate — one starting with `=`, `+`, `-`, `@`, a tab or a
//! carriage return (OWASP's list) — is written with a leading `'`, which spreadsheets show as text.
//! Numbers are written as they are (`-3` is a number, not a formula).

/// One CSV line under construction.
#[derive(Debug, Default)]
pub(crate) struct CsvLine {
    cells: Vec<String>,
}

/// Whether a spreadsheet would run `text` as a formula.
fn is_formula(text: &str) -> bool {
    text.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

impl CsvLine {
    /// A new, empty line.
    pub(crate) fn new() -> CsvLine {
        CsvLine::default()
    }

    /// Adds a text cell, guarded.
    pub(crate) fn text(&mut self, text: &str) -> &mut CsvLine {
        self.cells.push(if is_formula(text) {
            format!("'{text}")
        } else {
            text.to_string()
        });
        self
    }

    /// Adds a number (or any value that is not user text), unguarded.
    pub(crate) fn number(&mut self, value: impl std::fmt::Display) -> &mut CsvLine {
        self.cells.push(value.to_string());
        self
    }

    /// The line, quoted where needed and ended by CRLF.
    pub(crate) fn finish(&mut self) -> String {
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .buffer_capacity(1024)
            .from_writer(Vec::new());
        writer
            .write_record(&self.cells)
            .expect("writing CSV into memory cannot fail");
        let bytes = writer.into_inner().expect("flushing CSV into memory cannot fail");
        self.cells.clear();
        String::from_utf8(bytes).expect("CSV of UTF-8 cells is UTF-8")
    }
}

/// A line of text cells.
#[cfg(test)]
pub(crate) fn text_line<S: AsRef<str>>(cells: impl IntoIterator<Item = S>) -> String {
    let mut line = CsvLine::new();
    for cell in cells {
        line.text(cell.as_ref());
    }
    line.finish()
}

/// The header line: Owl's own column names (`@timestamp` included), quoted but not guarded.
pub(crate) fn header_line(columns: &[&str]) -> String {
    let mut line = CsvLine::new();
    for column in columns {
        line.number(column);
    }
    line.finish()
}

/// Reads one line back with the csv crate's reader, as a spreadsheet import would (tests).
#[cfg(test)]
pub(crate) fn read_line(line: &str) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line.as_bytes());
    reader
        .records()
        .next()
        .expect("one line")
        .expect("valid CSV")
        .iter()
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_formula_start_is_guarded_and_the_rest_round_trips() {
        let cells = [
            "=HYPERLINK(\"http://x\")",
            "+1",
            "-2+3",
            "@SUM(A1)",
            "\tcmd",
            "\rcmd",
            "a,b",
            "say \"hi\"",
            "two\nlines",
            "plain",
            "",
            "中文",
        ];
        let line = text_line(cells);
        assert!(line.ends_with("\r\n"), "{line:?}");
        let back = read_line(&line);
        for (written, read) in cells.iter().zip(&back) {
            if is_formula(written) {
                assert_eq!(read, &format!("'{written}"));
            } else {
                assert_eq!(read, written);
            }
        }
        assert_eq!(back.len(), cells.len());
    }

    #[test]
    fn numbers_are_not_guarded() {
        let line = CsvLine::new().number(-3).number(2.5).text("-3").finish();
        assert_eq!(line, "-3,2.5,'-3\r\n");
    }
}
