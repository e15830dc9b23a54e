//! Readers for JSONL, CSV and Parquet sources. Each streams its file row by row, maps the source's fields
//! onto [`Record`]s, and sets malformed rows aside as [`Quarantined`] (or stops, under
//! `on_bad_record = "fail"`). Every row read is either a record or a quarantined row: nothing is dropped.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use hone_core::config::{BadRecordPolicy, SourceConfig, SourceFormat, TaskKind, delimiter_byte};
use hone_core::{Error, Quarantined, Record, Result};
use serde_json::{Map, Value};

/// What reading one source produced.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    pub records: Vec<Record>,
    pub quarantined: Vec<Quarantined>,
    /// Rows seen (records + quarantined).
    pub n_rows: u64,
    /// blake3 of the file's bytes, part of the dataset version's identity.
    pub file_hash: String,
}

/// Everything a reader needs besides the file.
pub struct ReadOptions<'a> {
    pub kind: TaskKind,
    pub on_bad_record: BadRecordPolicy,
    /// Masks PII in anything quoted from a bad row (quarantine excerpts and error messages).
    pub mask: &'a (dyn Fn(&str) -> String + Sync),
}

struct BadField {
    field: String,
    reason: String,
}

fn bad(field: &str, reason: impl Into<String>) -> BadField {
    BadField {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// Read one `[[source]]` relative to the project root.
pub fn read_source(root: &Path, src: &SourceConfig, opts: &ReadOptions) -> Result<ReadOutcome> {
    let path = root.join(&src.path);
    let file_hash = hash_file(&path)?;
    match src.format() {
        Some(SourceFormat::Parquet) => read_rows(&path, src, opts, file_hash, |sink| {
            read_parquet(&path, sink)
        }),
        Some(format) => {
            let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            read_rows(&path, src, opts, file_hash, |sink| {
                read_text(
                    format,
                    &path,
                    src,
                    BufReader::with_capacity(1 << 16, file),
                    sink,
                )
            })
        }
        None => Err(Error::Usage(format!(
            "cannot tell the format of {}",
            src.path
        ))),
    }
}

/// Read a JSONL or CSV source from bytes in memory (used by the fuzz targets; `src.path` names it in
/// messages).
pub fn read_bytes(bytes: &[u8], src: &SourceConfig, opts: &ReadOptions) -> Result<ReadOutcome> {
    let path = PathBuf::from(&src.path);
    let hash = hone_core::hash::hash_bytes(bytes);
    match src.format() {
        Some(SourceFormat::Parquet) | None => {
            Err(Error::Usage("read_bytes reads JSONL and CSV only".into()))
        }
        Some(format) => read_rows(&path, src, opts, hash, |sink| {
            read_text(format, &path, src, bytes, sink)
        }),
    }
}

fn read_text(
    format: SourceFormat,
    path: &Path,
    src: &SourceConfig,
    reader: impl BufRead,
    sink: &mut Sink,
) -> Result<()> {
    match format {
        SourceFormat::Csv => {
            let delim = match &src.delimiter {
                Some(d) => delimiter_byte(d).unwrap_or(b','),
                None if src.path.ends_with(".tsv") => b'\t',
                None => b',',
            };
            read_csv(path, reader, delim, sink)
        }
        _ => read_jsonl(path, reader, sink),
    }
}

fn read_rows(
    path: &Path,
    src: &SourceConfig,
    opts: &ReadOptions,
    file_hash: String,
    body: impl FnOnce(&mut Sink) -> Result<()>,
) -> Result<ReadOutcome> {
    let path = path.to_path_buf();
    let mapper = FieldMapper::new(src, opts.kind);
    let mut out = ReadOutcome {
        file_hash,
        ..Default::default()
    };
    let mut sink = |line: u64,
                    row: std::result::Result<Map<String, Value>, BadField>,
                    raw: &str|
     -> Result<()> {
        out.n_rows += 1;
        let mapped = row.and_then(|r| mapper.map(&r, line));
        match mapped {
            Ok(rec) => out.records.push(rec),
            Err(b) => {
                let excerpt = excerpt(&(opts.mask)(raw));
                let reason = (opts.mask)(&b.reason);
                if opts.on_bad_record == BadRecordPolicy::Fail {
                    return Err(Error::BadRecord {
                        file: path.clone(),
                        line,
                        field: b.field,
                        reason,
                        hint: "fix the row, or set [policy] on_bad_record = \"quarantine\" to set such rows aside".into(),
                    });
                }
                out.quarantined.push(Quarantined {
                    id: format!("{}-{}", src.name, line),
                    source: src.name.clone(),
                    file: src.path.clone(),
                    line,
                    field: b.field,
                    reason,
                    excerpt,
                });
            }
        }
        Ok(())
    };
    body(&mut sink)?;
    Ok(out)
}

fn excerpt(s: &str) -> String {
    const MAX: usize = 200;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        s.chars().take(MAX).collect::<String>() + "…"
    }
}

fn hash_file(path: &Path) -> Result<String> {
    let mut hasher = blake3::Hasher::new();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    hasher.update_reader(file).map_err(|e| Error::io(path, e))?;
    Ok(hasher.finalize().to_hex().to_string())
}

type Sink<'s> =
    dyn FnMut(u64, std::result::Result<Map<String, Value>, BadField>, &str) -> Result<()> + 's;

fn read_jsonl(path: &Path, mut reader: impl BufRead, sink: &mut Sink) -> Result<()> {
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let raw = match std::str::from_utf8(&buf) {
            Ok(s) => s,
            Err(e) => {
                let lossy = String::from_utf8_lossy(&buf).into_owned();
                sink(
                    line_no,
                    Err(bad(
                        "(line)",
                        format!("invalid UTF-8 at byte {}", e.valid_up_to()),
                    )),
                    lossy.trim_end(),
                )?;
                continue;
            }
        };
        let trimmed = raw.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        if trimmed.is_empty() {
            continue; // blank lines are not rows
        }
        let row = match serde_json::from_str::<Value>(trimmed) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(other) => Err(bad(
                "(line)",
                format!("expected a JSON object, found {}", json_type(&other)),
            )),
            Err(e) => Err(bad("(line)", format!("invalid JSON: {e}"))),
        };
        sink(line_no, row, trimmed)?;
    }
    Ok(())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether a record's raw bytes keep RFC 4180's quoting: a quoted field ends at a quote followed by the
/// delimiter, a line end or the end, and `""` is an escaped quote. csv's lenient parser reads past a
/// broken quote into the following lines, so a multi-line record that breaks these rules is rows merged
/// by an unclosed quote, not one row with line breaks in a field.
fn strict_quotes_ok(raw: &[u8], delimiter: u8) -> bool {
    let mut i = 0;
    let mut at_field_start = true;
    while i < raw.len() {
        let b = raw[i];
        if at_field_start && b == b'"' {
            // A quoted field: find its end.
            i += 1;
            loop {
                match raw.get(i) {
                    None => return false, // still open at the end
                    Some(b'"') if raw.get(i + 1) == Some(&b'"') => i += 2,
                    Some(b'"') => {
                        i += 1;
                        match raw.get(i) {
                            None | Some(b'\r') | Some(b'\n') => break,
                            Some(&c) if c == delimiter => break,
                            Some(_) => return false, // text after the closing quote
                        }
                    }
                    Some(_) => i += 1,
                }
            }
            at_field_start = false;
            continue;
        }
        at_field_start = b == delimiter || b == b'\n';
        i += 1;
    }
    true
}

/// 1-based physical line numbers of byte offsets, counting `\n`, `\r\n` and a lone `\r` as line ends
/// (the csv crate counts only `\n`, so every row of a CR-only file was on "line 1"). Offsets must come
/// in increasing order.
#[derive(Default)]
struct LineCounter {
    pos: usize,
    line: u64,
}

impl LineCounter {
    fn line_at(&mut self, data: &[u8], at: usize) -> u64 {
        let at = at.min(data.len());
        while self.pos < at {
            match data[self.pos] {
                b'\n' => self.line += 1,
                b'\r' if data.get(self.pos + 1) != Some(&b'\n') => self.line += 1,
                _ => {}
            }
            self.pos += 1;
        }
        self.line + 1
    }
}

/// CSV is read whole (curation holds every record in memory anyway): a row that an unclosed quote would
/// merge with the rows after it is quarantined alone, and reading starts again on the next line.
fn read_csv(path: &Path, mut reader: impl BufRead, delimiter: u8, sink: &mut Sink) -> Result<()> {
    let mut data = Vec::new();
    reader
        .read_to_end(&mut data)
        .map_err(|e| Error::io(path, e))?;
    let mut headers: Option<Vec<String>> = None;
    // Where the current csv reader starts: a byte offset and the number of lines before it.
    let mut offset = 0usize;
    let mut lines = LineCounter::default();
    'restart: loop {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .has_headers(false)
            .from_reader(&data[offset..]);
        let mut record = csv::ByteRecord::new();
        loop {
            let more = match reader.read_byte_record(&mut record) {
                Ok(m) => m,
                Err(e) => {
                    let at = e.position().map_or(0, |p| p.byte() as usize);
                    let line = lines.line_at(&data, offset + at);
                    match e.kind() {
                        csv::ErrorKind::Io(_) => {
                            return Err(Error::io(path, std::io::Error::other(e.to_string())));
                        }
                        _ => {
                            sink(line, Err(bad("(row)", format!("malformed CSV: {e}"))), "")?;
                            continue;
                        }
                    }
                }
            };
            if !more {
                break 'restart;
            }
            let (start, end) = (
                record.position().map_or(0, |p| p.byte() as usize),
                reader.position().byte() as usize,
            );
            // csv may place a record's start on the line end before it (`\r` then `\n`): skip those.
            let start = start
                + data[(offset + start).min(data.len())..]
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
            let end = end.max(start);
            let raw = &data[(offset + start).min(data.len())..(offset + end).min(data.len())];
            let body = raw.strip_suffix(b"\n").unwrap_or(raw);
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            if headers.is_some() && body.contains(&b'\n') && !strict_quotes_ok(body, delimiter) {
                let line = lines.line_at(&data, offset + start);
                let first = body.iter().position(|&b| b == b'\n').unwrap_or(body.len());
                let excerpt = String::from_utf8_lossy(&body[..first]).into_owned();
                sink(
                    line,
                    Err(bad(
                        "(row)",
                        "a quote opened on this line is never closed where a field ends (a quote inside a quoted field is written \"\"); this line is set aside alone and the next line is read as the next row",
                    )),
                    &excerpt,
                )?;
                offset += start + first + 1;
                continue 'restart;
            }
            let line = lines.line_at(&data, offset + start);
            let Some(cols) = &headers else {
                let mut names = Vec::with_capacity(record.len());
                for (i, f) in record.iter().enumerate() {
                    let name = String::from_utf8_lossy(f)
                        .trim()
                        .trim_start_matches('\u{feff}')
                        .to_string();
                    if name.is_empty() {
                        return Err(Error::BadRecord {
                            file: path.into(),
                            line,
                            field: format!("column {}", i + 1),
                            reason: "empty column name in the header row".into(),
                            hint: "give every column a name in the first row".into(),
                        });
                    }
                    names.push(name);
                }
                let unique: BTreeSet<&String> = names.iter().collect();
                if unique.len() != names.len() {
                    return Err(Error::BadRecord {
                        file: path.into(),
                        line,
                        field: "(header)".into(),
                        reason: "duplicate column names in the header row".into(),
                        hint: "rename the repeated columns".into(),
                    });
                }
                headers = Some(names);
                continue;
            };
            let raw_lossy: String = record
                .iter()
                .map(|f| String::from_utf8_lossy(f))
                .collect::<Vec<_>>()
                .join(",");
            if record.len() == 1 && record.get(0).is_some_and(|f| f.is_empty()) {
                continue; // a blank line
            }
            if record.len() != cols.len() {
                sink(
                    line,
                    Err(bad(
                        "(row)",
                        format!(
                            "has {} columns, the header has {}",
                            record.len(),
                            cols.len()
                        ),
                    )),
                    &raw_lossy,
                )?;
                continue;
            }
            let mut map = Map::with_capacity(cols.len());
            let mut err = None;
            for (name, field) in cols.iter().zip(record.iter()) {
                match std::str::from_utf8(field) {
                    Ok(s) => {
                        map.insert(
                            name.clone(),
                            if s.is_empty() {
                                Value::Null
                            } else {
                                Value::String(s.to_string())
                            },
                        );
                    }
                    Err(e) => {
                        err = Some(bad(
                            name,
                            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
                        ));
                        break;
                    }
                }
            }
            sink(line, err.map_or(Ok(map), Err), &raw_lossy)?;
        }
    }
    Ok(())
}

fn read_parquet(path: &Path, sink: &mut Sink) -> Result<()> {
    use arrow_array::RecordBatch;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let perr = |e: String| Error::BadRecord {
        file: path.into(),
        line: 0,
        field: "(file)".into(),
        reason: format!("not a readable Parquet file: {e}"),
        hint: "check the file, or declare its real format with format = \"...\"".into(),
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| perr(e.to_string()))?
        .with_batch_size(4096)
        .build()
        .map_err(|e| perr(e.to_string()))?;
    let mut row_no = 0u64;
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|e| perr(e.to_string()))?;
        let schema = batch.schema();
        for r in 0..batch.num_rows() {
            row_no += 1;
            let mut map = Map::new();
            for (c, field) in schema.fields().iter().enumerate() {
                map.insert(
                    field.name().clone(),
                    arrow_value(batch.column(c).as_ref(), r),
                );
            }
            let raw = Value::Object(map.clone()).to_string();
            sink(row_no, Ok(map), &raw)?;
        }
    }
    Ok(())
}

fn arrow_value(col: &dyn arrow_array::Array, row: usize) -> Value {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    use arrow_schema::DataType;
    if col.is_null(row) {
        return Value::Null;
    }
    match col.data_type() {
        DataType::Utf8 => Value::String(col.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(col.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Value::String(col.as_string_view().value(row).to_string()),
        DataType::Boolean => Value::Bool(col.as_boolean().value(row)),
        DataType::Int8 => col.as_primitive::<Int8Type>().value(row).into(),
        DataType::Int16 => col.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => col.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => col.as_primitive::<Int64Type>().value(row).into(),
        DataType::UInt8 => col.as_primitive::<UInt8Type>().value(row).into(),
        DataType::UInt16 => col.as_primitive::<UInt16Type>().value(row).into(),
        DataType::UInt32 => col.as_primitive::<UInt32Type>().value(row).into(),
        DataType::UInt64 => col.as_primitive::<UInt64Type>().value(row).into(),
        DataType::Float32 => {
            serde_json::Number::from_f64(col.as_primitive::<Float32Type>().value(row) as f64)
                .map_or(Value::Null, Value::Number)
        }
        DataType::Float64 => {
            serde_json::Number::from_f64(col.as_primitive::<Float64Type>().value(row))
                .map_or(Value::Null, Value::Number)
        }
        DataType::Date32 => {
            let days = col.as_primitive::<Date32Type>().value(row);
            chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163).map_or(Value::Null, |d| {
                Value::String(d.format("%Y-%m-%d").to_string())
            })
        }
        DataType::List(_) => {
            let list = col.as_list::<i32>().value(row);
            Value::Array(
                (0..list.len())
                    .map(|i| arrow_value(list.as_ref(), i))
                    .collect(),
            )
        }
        other => Value::String(format!("<unsupported {other}>")),
    }
}

/// Maps a source row (as a JSON object) onto a [`Record`].
struct FieldMapper {
    source: String,
    id: Option<String>,
    text: String,
    label: String,
    date: Option<String>,
    valid_until: Option<String>,
    consent: Option<String>,
    topic: Option<String>,
    tags: Option<String>,
    group: Option<String>,
    messages: Option<String>,
    kind: TaskKind,
}

impl FieldMapper {
    fn new(src: &SourceConfig, kind: TaskKind) -> Self {
        let f = &src.fields;
        FieldMapper {
            source: src.name.clone(),
            id: f.id.clone(),
            text: src.text_column(kind),
            label: src.label_column(kind),
            date: f.date.clone(),
            valid_until: f.valid_until.clone(),
            consent: f.consent.clone(),
            topic: f.topic.clone(),
            tags: f.tags.clone(),
            group: f.group.clone(),
            messages: f.messages.clone(),
            kind,
        }
    }

    fn map(&self, row: &Map<String, Value>, line: u64) -> std::result::Result<Record, BadField> {
        // Mapped columns default to the column of the field's own name when present.
        let col = |mapped: &Option<String>, default: &str| -> Option<String> {
            mapped
                .clone()
                .or_else(|| row.contains_key(default).then(|| default.to_string()))
        };
        let id_col = col(&self.id, "id");
        let id = match &id_col {
            Some(c) => match row.get(c) {
                Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::Null) | None if self.id.is_none() => {
                    format!("{}-{}", self.source, line)
                }
                other => {
                    return Err(bad(
                        c,
                        format!(
                            "id must be a non-empty string or number, found {}",
                            other.map_or("nothing", json_type)
                        ),
                    ));
                }
            },
            None => format!("{}-{}", self.source, line),
        };
        let (turns, text, label) = match &self.messages {
            Some(c) => conversation(row.get(c)).map_err(|r| bad(c, r))?,
            None => (Vec::new(), self.text_of(row)?, self.label_of(row)?),
        };
        let date = match col(&self.date, "date") {
            Some(c) => parse_date_value(row.get(&c)).map_err(|r| bad(&c, r))?,
            None => None,
        };
        let valid_until = match col(&self.valid_until, "valid_until") {
            Some(c) => parse_date_value(row.get(&c)).map_err(|r| bad(&c, r))?,
            None => None,
        };
        let consent = match col(&self.consent, "consent") {
            Some(c) => parse_consent(row.get(&c)).map_err(|r| bad(&c, r))?,
            None => None,
        };
        let topic = col(&self.topic, "topic").and_then(|c| scalar_string(row.get(&c)));
        let group = col(&self.group, "group").and_then(|c| scalar_string(row.get(&c)));
        let tags = match col(&self.tags, "tags") {
            Some(c) => match row.get(&c) {
                Some(Value::Array(a)) => a.iter().filter_map(|v| scalar_string(Some(v))).collect(),
                Some(Value::String(s)) => s
                    .split([',', ';'])
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from)
                    .collect(),
                _ => Vec::new(),
            },
            None => Vec::new(),
        };
        let (text_col, label_col) = match &self.messages {
            Some(m) => (Some(m.clone()), None),
            None => (Some(self.text.clone()), Some(self.label.clone())),
        };
        let used: BTreeSet<String> = [
            id_col,
            text_col,
            label_col,
            col(&self.date, "date"),
            col(&self.valid_until, "valid_until"),
            col(&self.consent, "consent"),
            col(&self.topic, "topic"),
            col(&self.group, "group"),
            col(&self.tags, "tags"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let meta: Map<String, Value> = row
            .iter()
            .filter(|(k, v)| !used.contains(*k) && !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Record {
            id,
            text,
            label,
            source: self.source.clone(),
            line,
            date,
            valid_until,
            consent,
            topic,
            tags,
            group,
            cluster: None,
            meta: Value::Object(meta).to_string(),
            turns,
        })
    }

    fn text_of(&self, row: &Map<String, Value>) -> std::result::Result<String, BadField> {
        match row.get(&self.text) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Null) | None => Err(bad(&self.text, "missing text")),
            Some(other) => Err(bad(
                &self.text,
                format!("text must be a string, found {}", json_type(other)),
            )),
        }
    }

    fn label_of(&self, row: &Map<String, Value>) -> std::result::Result<Option<String>, BadField> {
        match row.get(&self.label) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(Value::Null) | None if self.kind == TaskKind::Generate => Ok(None),
            Some(Value::String(_)) | Some(Value::Null) | None => {
                Err(bad(&self.label, "missing label"))
            }
            Some(other) => Err(bad(
                &self.label,
                format!(
                    "label must be a string or number, found {}",
                    json_type(other)
                ),
            )),
        }
    }
}

/// A `messages` column: a list of `{role, content}` cut by [`hone_core::record::split_conversation`].
#[allow(clippy::type_complexity)]
fn conversation(
    v: Option<&Value>,
) -> std::result::Result<(Vec<hone_core::record::Turn>, String, Option<String>), String> {
    // CSV and Parquet cells hold the list as JSON text.
    let parsed = match v {
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).ok(),
        _ => None,
    };
    let Some(Value::Array(items)) = parsed.as_ref().or(v) else {
        return Err(format!(
            "messages must be a list of {{\"role\", \"content\"}}, found {}",
            v.map_or("nothing", json_type)
        ));
    };
    let mut turns = Vec::with_capacity(items.len());
    for (i, m) in items.iter().enumerate() {
        let field = |k: &str| match m.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            other => Err(format!(
                "message {}: `{k}` must be a string, found {}",
                i + 1,
                other.map_or("nothing", json_type)
            )),
        };
        turns.push(hone_core::record::Turn {
            role: field("role")?,
            content: field("content")?,
        });
    }
    let (turns, prompt, target) = hone_core::record::split_conversation(turns)?;
    Ok((turns, prompt, target.filter(|t| !t.trim().is_empty())))
}

fn scalar_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Dates are kept as `YYYY-MM-DD`. Accepted: `YYYY-MM-DD`, `YYYY/MM/DD`, RFC 3339 and `YYYY-MM-DD HH:MM[:SS]`.
fn parse_date_value(v: Option<&Value>) -> std::result::Result<Option<String>, String> {
    let s = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => s.trim(),
        Some(other) => return Err(format!("date must be a string, found {}", json_type(other))),
    };
    parse_date_str(s)
        .map(|d| Some(d.format("%Y-%m-%d").to_string()))
        .ok_or_else(|| format!("unparseable date {s:?} (use YYYY-MM-DD or RFC 3339)"))
}

pub fn parse_date_str(s: &str) -> Option<chrono::NaiveDate> {
    use chrono::NaiveDate;
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d);
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y/%m/%d") {
        return Some(d);
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(dt.date_naive());
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.date());
        }
    }
    None
}

fn parse_consent(v: Option<&Value>) -> std::result::Result<Option<bool>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(1) => Ok(Some(true)),
            Some(0) => Ok(Some(false)),
            _ => Err(format!(
                "consent must be true/false, yes/no or 1/0, found {n}"
            )),
        },
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "" => Ok(None),
            "true" | "yes" | "y" | "1" | "opt_in" | "opted_in" | "granted" => Ok(Some(true)),
            "false" | "no" | "n" | "0" | "opt_out" | "opted_out" | "denied" | "withdrawn" => {
                Ok(Some(false))
            }
            other => Err(format!(
                "consent must be true/false, yes/no or 1/0, found {other:?}"
            )),
        },
        Some(other) => Err(format!(
            "consent must be true/false, yes/no or 1/0, found {}",
            json_type(other)
        )),
    }
}

/// The path of a source file, for messages.
pub fn source_path(root: &Path, src: &SourceConfig) -> PathBuf {
    root.join(&src.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str, extra: &str) -> SourceConfig {
        toml::from_str(&format!("name = \"src\"\npath = {path:?}\n{extra}")).unwrap()
    }

    fn read(
        dir: &Path,
        file: &str,
        bytes: &[u8],
        extra: &str,
        policy: BadRecordPolicy,
    ) -> Result<ReadOutcome> {
        std::fs::write(dir.join(file), bytes).unwrap();
        let mask = |s: &str| s.replace("bob@example.com", "<EMAIL>");
        read_source(
            dir,
            &source(file, extra),
            &ReadOptions {
                kind: TaskKind::Classify,
                on_bad_record: policy,
                mask: &mask,
            },
        )
    }

    /// Chat records: the last user message is the prompt, the answer to it the target, the turns
    /// before them the context; a conversation without a target is kept (as for prompt/target); a
    /// wrong one is quarantined naming `messages` and the message at fault; CSV cells hold JSON.
    #[test]
    fn a_messages_column_becomes_turns_prompt_and_target() {
        let dir = tempfile::tempdir().unwrap();
        let data = br#"{"id": "c1", "conv": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "where is my parcel?"}, {"role": "assistant", "content": "On its way."}]}
{"id": "c2", "conv": [{"role": "user", "content": "no answer yet"}]}
{"id": "c3", "conv": [{"role": "user", "content": "x"}, {"role": "system", "content": "late"}]}
{"id": "c4", "conv": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "assistant", "content": "c"}]}
{"id": "c5", "conv": "not a list"}
{"id": "c6", "conv": [{"role": "user", "content": 5}]}
"#;
        std::fs::write(dir.path().join("c.jsonl"), data).unwrap();
        let mask = |s: &str| s.to_string();
        let opts = ReadOptions {
            kind: TaskKind::Generate,
            on_bad_record: BadRecordPolicy::Quarantine,
            mask: &mask,
        };
        let src = source("c.jsonl", "fields = { messages = \"conv\" }");
        let out = read_source(dir.path(), &src, &opts).unwrap();
        let r = &out.records[0];
        assert_eq!(
            (r.text.as_str(), r.label.as_deref()),
            ("where is my parcel?", Some("On its way."))
        );
        let roles: Vec<&str> = r.turns.iter().map(|t| t.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant"]);
        assert_eq!(r.meta, "{}", "the messages column is used, not metadata");
        assert_eq!(
            (
                out.records[1].text.as_str(),
                out.records[1].label.as_deref()
            ),
            ("no answer yet", None)
        );
        let q: Vec<(u64, &str, &str)> = out
            .quarantined
            .iter()
            .map(|q| (q.line, q.field.as_str(), q.reason.as_str()))
            .collect();
        assert_eq!(q.len(), 4, "{q:?}");
        assert!(q.iter().all(|(_, f, _)| *f == "conv"), "{q:?}");
        assert!(
            q[0].2.contains("message 2") && q[0].2.contains("system"),
            "{q:?}"
        );
        assert!(q[1].2.contains("must follow a user message"), "{q:?}");
        assert!(q[2].2.contains("must be a list"), "{q:?}");
        assert!(q[3].2.contains("`content` must be a string"), "{q:?}");
        // CSV: the cell holds the list as JSON text.
        std::fs::write(
            dir.path().join("c.csv"),
            "id,conv\nk1,\"[{\"\"role\"\": \"\"user\"\", \"\"content\"\": \"\"q\"\"}, {\"\"role\"\": \"\"assistant\"\", \"\"content\"\": \"\"a\"\"}]\"\n",
        )
        .unwrap();
        let src = source("c.csv", "fields = { messages = \"conv\" }");
        let out = read_source(dir.path(), &src, &opts).unwrap();
        assert_eq!(
            (
                out.records[0].text.as_str(),
                out.records[0].label.as_deref()
            ),
            ("q", Some("a"))
        );
    }

    #[test]
    fn jsonl_quarantines_each_kind_of_bad_row_with_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"{\"id\": \"a\", \"text\": \"fine\", \"label\": \"x\"}\n\
{\"id\": \"b\", \"text\": \"mail bob@example.com\"\n\
[1, 2]\n\
{\"text\": \"no label\"}\n\
{\"text\": \"bad \xff utf8\", \"label\": \"x\"}\n\
\n\
{\"text\": \"bad date\", \"label\": \"x\", \"date\": \"yesterday\"}\n\
{\"text\": 5, \"label\": \"x\"}\n\
{\"text\": \"defaults id\", \"label\": 3, \"extra\": \"kept in meta\", \"consent\": \"opt-in\"}\n";
        let out = read(dir.path(), "a.jsonl", data, "", BadRecordPolicy::Quarantine).unwrap();
        assert_eq!(out.n_rows, 8, "blank lines are not rows");
        assert_eq!(out.records.len() + out.quarantined.len(), 8);
        let q: Vec<(u64, &str)> = out
            .quarantined
            .iter()
            .map(|q| (q.line, q.field.as_str()))
            .collect();
        assert_eq!(
            q,
            vec![
                (2, "(line)"),
                (3, "(line)"),
                (4, "label"),
                (5, "(line)"),
                (7, "date"),
                (8, "text")
            ]
        );
        assert!(
            out.quarantined[0].excerpt.contains("<EMAIL>")
                && !out.quarantined[0].excerpt.contains("bob@"),
            "excerpts are masked"
        );
        let last = &out.records[1];
        assert_eq!(last.id, "src-9");
        assert_eq!(last.label.as_deref(), Some("3"));
        assert_eq!(last.consent, Some(true));
        assert_eq!(last.meta, "{\"extra\":\"kept in meta\"}");
        let err = read(dir.path(), "a.jsonl", data, "", BadRecordPolicy::Fail)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a.jsonl:2: field `(line)`: invalid JSON"),
            "{err}"
        );
        assert!(err.contains("hint:"), "{err}");
    }

    #[test]
    fn csv_maps_fields_handles_quoting_and_quarantines_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let data = "ticket;message;intent;when\nT1;\"hello; \"\"quoted\"\"\nworld\";a;2025-01-02\nT2;short row\nT3;ok;b;2025-13-40\nT4;fine;c;2025-03-04T10:00:00Z\n";
        let extra = "delimiter = \";\"\nfields = { id = \"ticket\", text = \"message\", label = \"intent\", date = \"when\" }";
        let out = read(
            dir.path(),
            "a.csv",
            data.as_bytes(),
            extra,
            BadRecordPolicy::Quarantine,
        )
        .unwrap();
        assert_eq!(out.records.len(), 2);
        assert_eq!(out.records[0].id, "T1");
        assert_eq!(out.records[0].text, "hello; \"quoted\"\nworld");
        assert_eq!(out.records[0].line, 2);
        assert_eq!(out.records[1].date.as_deref(), Some("2025-03-04"));
        let q: Vec<(u64, &str)> = out
            .quarantined
            .iter()
            .map(|q| (q.line, q.field.as_str()))
            .collect();
        assert_eq!(q, vec![(4, "(row)"), (5, "when")]);
        assert!(
            out.quarantined[0]
                .reason
                .contains("has 2 columns, the header has 4")
        );
    }

    #[test]
    fn an_unclosed_quote_never_merges_rows() {
        // Issue 12, finding 2: a2's quote used to swallow a3 and a4, and a2 took a4's label.
        let dir = tempfile::tempdir().unwrap();
        let mut data = String::from("id,text,label\na1,hello there,ham\n");
        data += "a2,\"unterminated quote, win a prize now,spam\n";
        data += "a3,see you at eight,ham\n";
        data += "a4,\"a quoted, fine field\",ham\n";
        for i in 5..=10 {
            data += &format!("a{i},message {i},ham\n");
        }
        // A legitimate line break inside a quoted field is still one row.
        data += "a11,\"two\nlines\",ham\n";
        let out = read(
            dir.path(),
            "q.csv",
            data.as_bytes(),
            "",
            BadRecordPolicy::Quarantine,
        )
        .unwrap();
        let ids: Vec<&str> = out.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            ["a1", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10", "a11"]
        );
        assert_eq!(out.records[2].text, "a quoted, fine field");
        assert_eq!(out.records[2].label.as_deref(), Some("ham"));
        assert_eq!(out.records[9].text, "two\nlines");
        let lines: Vec<u64> = out.records.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(out.quarantined.len(), 1);
        assert_eq!(out.quarantined[0].line, 3);
        assert!(
            out.quarantined[0].reason.contains("never closed"),
            "{:?}",
            out.quarantined[0]
        );
        // Every physical row line is accounted for: 12 rows on 13 lines (one holds a line break).
        assert_eq!(out.n_rows, 11);
    }

    #[test]
    fn rows_of_a_file_with_carriage_return_line_ends_get_their_own_lines() {
        let dir = tempfile::tempdir().unwrap();
        let data = "id,text,label\ra1,hello,ham\ra2,short row\ra3,bye,ham\r";
        let out = read(
            dir.path(),
            "cr.csv",
            data.as_bytes(),
            "",
            BadRecordPolicy::Quarantine,
        )
        .unwrap();
        let lines: Vec<u64> = out.records.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 4]);
        assert_eq!(out.quarantined[0].line, 3);
        // Found by fuzzing: after a `\r\n`, csv put the next row's start on the `\n`.
        let out = read(
            dir.path(),
            "crlf.csv",
            b"text\nab\r\ncd",
            "",
            BadRecordPolicy::Quarantine,
        )
        .unwrap();
        let mut lines: Vec<u64> = out.records.iter().map(|r| r.line).collect();
        lines.extend(out.quarantined.iter().map(|q| q.line));
        lines.sort_unstable();
        assert_eq!(lines, [2, 3]);
    }

    #[test]
    fn csv_header_problems_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            read(
                dir.path(),
                "h.csv",
                b"text,text\na,b\n",
                "",
                BadRecordPolicy::Quarantine
            )
            .unwrap_err()
            .to_string()
            .contains("duplicate column")
        );
        assert!(
            read(
                dir.path(),
                "h.csv",
                b"text,,label\na,b,c\n",
                "",
                BadRecordPolicy::Quarantine
            )
            .unwrap_err()
            .to_string()
            .contains("empty column name")
        );
    }

    #[test]
    fn parquet_sources_are_read_row_by_row() {
        let dir = tempfile::tempdir().unwrap();
        let recs = vec![
            Record {
                id: "p1".into(),
                text: "from parquet".into(),
                label: Some("x".into()),
                source: "orig".into(),
                line: 1,
                tags: vec!["hard".into()],
                meta: "{}".into(),
                ..Default::default()
            },
            Record {
                id: "p2".into(),
                text: "second".into(),
                label: None,
                source: "orig".into(),
                line: 2,
                meta: "{}".into(),
                ..Default::default()
            },
        ];
        let bytes = crate::dataset::encode(&recs).unwrap();
        let out = read(
            dir.path(),
            "a.parquet",
            &bytes,
            "",
            BadRecordPolicy::Quarantine,
        )
        .unwrap();
        assert_eq!(out.records.len(), 1);
        assert_eq!(out.records[0].id, "p1");
        assert_eq!(out.records[0].tags, vec!["hard".to_string()]);
        assert_eq!(
            (out.quarantined[0].line, out.quarantined[0].field.as_str()),
            (2, "label")
        );
        let err = read(
            dir.path(),
            "b.parquet",
            b"PAR1 not really",
            "",
            BadRecordPolicy::Quarantine,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not a readable Parquet file"), "{err}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let mask = |s: &str| s.to_string();
        let err = read_source(
            dir.path(),
            &source("nope.jsonl", ""),
            &ReadOptions {
                kind: TaskKind::Classify,
                on_bad_record: BadRecordPolicy::Quarantine,
                mask: &mask,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("nope.jsonl"), "{err}");
    }
}
