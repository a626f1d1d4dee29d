//! Recipient lists: CSV (a header row with an `email` column, optional `name`,
//! every other column a substitution) or NDJSON (one `RecipientSpec` object per
//! line), read one record at a time and turned into the campaign stream's NDJSON
//! lines, so a list of any length needs bounded memory.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The list's format, from `--format` or the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    /// Comma-separated values with a header row (RFC 4180 quoting).
    Csv,
    /// One JSON object per line: `{"email": .., "name": .., "substitutions": {..}}`.
    Ndjson,
}

impl ListFormat {
    /// `.csv` is CSV; `.ndjson`, `.jsonl` and `.json` are NDJSON.
    pub fn from_path(path: &Path) -> Option<ListFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(ListFormat::Csv),
            "ndjson" | "jsonl" | "json" => Some(ListFormat::Ndjson),
            _ => None,
        }
    }
}

/// A problem with the list file, with the line it is on when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number, when the problem is on a line.
    pub line: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(n) => write!(f, "{}:{n}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// What a CSV column becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    Email,
    Name,
    Substitution(String),
}

/// Reads a list record by record.
pub struct ListReader {
    path: PathBuf,
    input: Box<dyn BufRead + Send>,
    format: ListFormat,
    /// CSV columns, from the header row.
    columns: Vec<Column>,
    /// Physical lines read so far.
    line: u64,
    /// Bytes read so far.
    bytes: u64,
    /// Reused line buffer.
    buf: Vec<u8>,
}

impl ListReader {
    /// Opens `path` (reading the CSV header row).
    pub fn open(path: &Path, format: ListFormat) -> Result<ListReader, ListError> {
        let file = File::open(path).map_err(|e| ListError {
            path: path.to_path_buf(),
            line: None,
            message: format!("cannot open: {e}"),
        })?;
        ListReader::new(
            path,
            Box::new(BufReader::with_capacity(256 * 1024, file)),
            format,
        )
    }

    /// Reads from any buffered input; `path` only names it in errors.
    pub fn new(
        path: &Path,
        input: Box<dyn BufRead + Send>,
        format: ListFormat,
    ) -> Result<ListReader, ListError> {
        let mut r = ListReader {
            path: path.to_path_buf(),
            input,
            format,
            columns: Vec::new(),
            line: 0,
            bytes: 0,
            buf: Vec::new(),
        };
        if format == ListFormat::Csv {
            r.read_header()?;
        }
        Ok(r)
    }

    /// Bytes of the file read so far (for progress).
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    fn err(&self, line: u64, message: impl Into<String>) -> ListError {
        ListError {
            path: self.path.clone(),
            line: Some(line),
            message: message.into(),
        }
    }

    /// Reads one physical line into `buf` (without the line ending); false at EOF.
    fn read_line(&mut self) -> Result<bool, ListError> {
        self.buf.clear();
        let n = self
            .input
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| self.err(self.line + 1, format!("read error: {e}")))?;
        if n == 0 {
            return Ok(false);
        }
        self.bytes += n as u64;
        self.line += 1;
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        Ok(true)
    }

    /// One CSV record (which may span lines inside quotes): its first line number
    /// and fields. `None` at EOF; blank lines are skipped.
    fn csv_record(&mut self) -> Result<Option<(u64, Vec<String>)>, ListError> {
        loop {
            if !self.read_line()? {
                return Ok(None);
            }
            let start = self.line;
            let mut text = self.utf8(start)?;
            if start == 1 {
                text = text.trim_start_matches('\u{feff}').to_string();
            }
            if text.trim().is_empty() {
                continue;
            }
            // An odd number of quotes so far: a quoted field goes on past the line end.
            while text.bytes().filter(|&b| b == b'"').count() % 2 == 1 {
                if !self.read_line()? {
                    return Err(self.err(start, "unterminated quoted field"));
                }
                text.push('\n');
                text.push_str(&self.utf8(start)?);
            }
            let fields = parse_csv_record(&text).map_err(|m| self.err(start, m))?;
            return Ok(Some((start, fields)));
        }
    }

    fn utf8(&self, line: u64) -> Result<String, ListError> {
        String::from_utf8(self.buf.clone()).map_err(|_| self.err(line, "not valid UTF-8"))
    }

    fn read_header(&mut self) -> Result<(), ListError> {
        let Some((line, names)) = self.csv_record()? else {
            return Err(ListError {
                path: self.path.clone(),
                line: None,
                message: "empty file: expected a header row with an `email` column".into(),
            });
        };
        let mut columns = Vec::with_capacity(names.len());
        for name in names {
            let name = name.trim().to_string();
            let column = match name.to_ascii_lowercase().as_str() {
                "email" => Column::Email,
                "name" => Column::Name,
                "" => return Err(self.err(line, "empty column name in the header row")),
                _ => Column::Substitution(name.clone()),
            };
            if columns.contains(&column) {
                return Err(self.err(line, format!("column {name:?} appears twice")));
            }
            columns.push(column);
        }
        if !columns.contains(&Column::Email) {
            return Err(self.err(
                line,
                "the header row has no `email` column (expected e.g. `email,name,...`)",
            ));
        }
        self.columns = columns;
        Ok(())
    }

    /// Appends the next recipient as one JSON line (with `\n`) to `out`; returns
    /// false at the end of the list.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> Result<bool, ListError> {
        match self.format {
            ListFormat::Csv => self.next_csv(out),
            ListFormat::Ndjson => self.next_ndjson(out),
        }
    }

    fn next_csv(&mut self, out: &mut Vec<u8>) -> Result<bool, ListError> {
        let Some((line, fields)) = self.csv_record()? else {
            return Ok(false);
        };
        if fields.len() != self.columns.len() {
            return Err(self.err(
                line,
                format!(
                    "{} fields, but the header row has {} columns",
                    fields.len(),
                    self.columns.len()
                ),
            ));
        }
        let mut email = None;
        let mut name = None;
        let mut subs = Map::new();
        for (column, value) in self.columns.iter().zip(fields) {
            match column {
                Column::Email => email = Some(value.trim().to_string()),
                Column::Name => name = Some(value).filter(|v| !v.is_empty()),
                Column::Substitution(key) => {
                    subs.insert(key.clone(), Value::String(value));
                }
            }
        }
        let email = email.unwrap_or_default();
        if email.is_empty() {
            return Err(self.err(line, "empty `email` field"));
        }
        let mut obj = Map::new();
        obj.insert("email".into(), Value::String(email));
        if let Some(n) = name {
            obj.insert("name".into(), Value::String(n));
        }
        if !subs.is_empty() {
            obj.insert("substitutions".into(), Value::Object(subs));
        }
        write_line(out, &Value::Object(obj));
        Ok(true)
    }

    fn next_ndjson(&mut self, out: &mut Vec<u8>) -> Result<bool, ListError> {
        loop {
            if !self.read_line()? {
                return Ok(false);
            }
            let line = self.line;
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let value: Value = serde_json::from_slice(&self.buf)
                .map_err(|e| self.err(line, format!("not a JSON object: {e}")))?;
            let Value::Object(obj) = &value else {
                return Err(self.err(line, "expected a JSON object ({\"email\": ...})"));
            };
            match obj.get("email") {
                Some(Value::String(s)) if !s.trim().is_empty() => {}
                _ => return Err(self.err(line, "missing `email` (a non-empty string)")),
            }
            write_line(out, &value);
            return Ok(true);
        }
    }
}

fn write_line(out: &mut Vec<u8>, value: &Value) {
    // Serialising a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    out.push(b'\n');
}

/// Splits one complete CSV record (RFC 4180: `"` quotes, `""` inside quotes is a
/// quote, quoted fields may hold commas and line breaks).
pub fn parse_csv_record(text: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            '"' if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            '"' => return Err("a quote inside an unquoted field (quote the whole field)".into()),
            _ if was_quoted && !c.is_whitespace() => {
                return Err("text after a closing quote".into());
            }
            _ if was_quoted => {}
            _ => field.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str, format: ListFormat) -> Result<Vec<Value>, ListError> {
        let input = Box::new(std::io::Cursor::new(text.as_bytes().to_vec()));
        let mut r = ListReader::new(Path::new("list"), input, format)?;
        let mut out = Vec::new();
        while r.next_into(&mut out)? {}
        Ok(out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect())
    }

    #[test]
    fn csv_records_split_with_quotes() {
        assert_eq!(parse_csv_record("a,b,,c").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(
            parse_csv_record(r#""x, y","say ""hi""", z"#).unwrap(),
            ["x, y", r#"say "hi""#, " z"]
        );
        assert_eq!(parse_csv_record("\"a\nb\",c").unwrap(), ["a\nb", "c"]);
        assert!(parse_csv_record("a\"b").is_err());
        assert!(parse_csv_record("\"a\"b").is_err());
        assert!(parse_csv_record("\"a").is_err());
    }

    #[test]
    fn csv_rows_become_recipient_specs() {
        let text = "\u{feff}Email,name,city\r\na@x.test,Ann,Oslo\r\n\r\nb@x.test,,\"Rio, BR\"\n";
        let v = read_all(text, ListFormat::Csv).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["email"], "a@x.test");
        assert_eq!(v[0]["name"], "Ann");
        assert_eq!(v[0]["substitutions"]["city"], "Oslo");
        assert!(v[1].get("name").is_none());
        assert_eq!(v[1]["substitutions"]["city"], "Rio, BR");
    }

    #[test]
    fn csv_errors_name_the_line() {
        let e = read_all("name,mail\nA,a@x\n", ListFormat::Csv).unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(e.message.contains("email"), "{e}");
        let e = read_all("email,name\na@x,A\nb@x\n", ListFormat::Csv).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().starts_with("list:3: "), "{e}");
        let e = read_all("email\n\"a@x\n", ListFormat::Csv).unwrap_err();
        assert_eq!(e.line, Some(2));
        let e = read_all("", ListFormat::Csv).unwrap_err();
        assert!(e.message.contains("empty"), "{e}");
    }

    #[test]
    fn ndjson_lines_pass_through_checked() {
        let text = "{\"email\":\"a@x\",\"substitutions\":{\"k\":1}}\n\n{\"email\":\"b@x\"}\n";
        let v = read_all(text, ListFormat::Ndjson).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["substitutions"]["k"], 1);
        let e = read_all("{\"email\":\"a@x\"}\n{oops\n", ListFormat::Ndjson).unwrap_err();
        assert_eq!(e.line, Some(2));
        let e = read_all("{\"name\":\"A\"}\n", ListFormat::Ndjson).unwrap_err();
        assert!(e.message.contains("email"), "{e}");
        let e = read_all("[1]\n", ListFormat::Ndjson).unwrap_err();
        assert_eq!(e.line, Some(1));
    }
}
