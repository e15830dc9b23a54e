//! Encoding curated records as a Parquet dataset (the immutable object behind a dataset version) and
//! decoding it back. The schema is flat and readable by pandas, DuckDB and Hugging Face datasets.

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, ListBuilder, StringBuilder, UInt64Builder};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use hone_core::{Error, Record, Result};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, false),
        Field::new("line", DataType::UInt64, false),
        Field::new("date", DataType::Utf8, true),
        Field::new("valid_until", DataType::Utf8, true),
        Field::new("consent", DataType::Boolean, true),
        Field::new("topic", DataType::Utf8, true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
        Field::new("group", DataType::Utf8, true),
        Field::new("cluster", DataType::Utf8, true),
        Field::new("meta", DataType::Utf8, false),
        // A chat record's earlier turns as JSON (null for prompt/target records); absent in
        // datasets written before chat records existed.
        Field::new("turns", DataType::Utf8, true),
    ]))
}

/// Encode records as Parquet bytes (snappy-compressed, deterministic for the same records).
pub fn encode(records: &[Record]) -> Result<Vec<u8>> {
    let schema = schema();
    let mut buf = Vec::new();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(format!("hone {}", hone_core::HONE_VERSION))
        .build();
    let mut writer = ArrowWriter::try_new(&mut buf, schema.clone(), Some(props))
        .map_err(|e| Error::Internal(format!("parquet writer: {e}")))?;
    for chunk in records.chunks(8192) {
        let batch = to_batch(chunk, &schema)?;
        writer
            .write(&batch)
            .map_err(|e| Error::Internal(format!("parquet write: {e}")))?;
    }
    writer
        .close()
        .map_err(|e| Error::Internal(format!("parquet close: {e}")))?;
    Ok(buf)
}

fn to_batch(records: &[Record], schema: &Arc<Schema>) -> Result<RecordBatch> {
    let strings = |f: &dyn Fn(&Record) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::new();
        for r in records {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    let mut line = UInt64Builder::new();
    let mut consent = BooleanBuilder::new();
    let mut tags = ListBuilder::new(StringBuilder::new());
    for r in records {
        line.append_value(r.line);
        consent.append_option(r.consent);
        for t in &r.tags {
            tags.values().append_value(t);
        }
        tags.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        strings(&|r| Some(&r.id)),
        strings(&|r| Some(&r.text)),
        strings(&|r| r.label.as_deref()),
        strings(&|r| Some(&r.source)),
        Arc::new(line.finish()),
        strings(&|r| r.date.as_deref()),
        strings(&|r| r.valid_until.as_deref()),
        Arc::new(consent.finish()),
        strings(&|r| r.topic.as_deref()),
        Arc::new(tags.finish()),
        strings(&|r| r.group.as_deref()),
        strings(&|r| r.cluster.as_deref()),
        strings(&|r| Some(&r.meta)),
        {
            let mut b = StringBuilder::new();
            for r in records {
                if r.turns.is_empty() {
                    b.append_null();
                } else {
                    let j = serde_json::to_string(&r.turns)
                        .map_err(|e| Error::Internal(format!("turns: {e}")))?;
                    b.append_value(j);
                }
            }
            Arc::new(b.finish())
        },
    ];
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::Internal(format!("arrow batch: {e}")))
}

/// Decode Parquet bytes written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Vec<Record>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::UInt64Type;
    let corrupt = |e: String| Error::Store(format!("dataset object is not readable Parquet: {e}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(bytes))
        .map_err(|e| corrupt(e.to_string()))?
        .build()
        .map_err(|e| corrupt(e.to_string()))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(e.to_string()))?;
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| corrupt(format!("missing column {name}")))
        };
        let s = |name: &str| -> Result<arrow_array::StringArray> {
            Ok(col(name)?.as_string::<i32>().clone())
        };
        let (id, text, label, source, date, valid_until, topic, group, cluster, meta) = (
            s("id")?,
            s("text")?,
            s("label")?,
            s("source")?,
            s("date")?,
            s("valid_until")?,
            s("topic")?,
            s("group")?,
            s("cluster")?,
            s("meta")?,
        );
        let turns = batch
            .column_by_name("turns")
            .map(|c| c.as_string::<i32>().clone());
        let line = col("line")?.as_primitive::<UInt64Type>().clone();
        let consent = col("consent")?.as_boolean().clone();
        let tags = col("tags")?.as_list::<i32>().clone();
        let opt = |a: &arrow_array::StringArray, i: usize| {
            (!a.is_null(i)).then(|| a.value(i).to_string())
        };
        for i in 0..batch.num_rows() {
            let t = tags.value(i);
            let t = t.as_string::<i32>();
            out.push(Record {
                id: id.value(i).to_string(),
                text: text.value(i).to_string(),
                label: opt(&label, i),
                source: source.value(i).to_string(),
                line: line.value(i),
                date: opt(&date, i),
                valid_until: opt(&valid_until, i),
                consent: (!consent.is_null(i)).then(|| consent.value(i)),
                topic: opt(&topic, i),
                tags: (0..t.len()).map(|j| t.value(j).to_string()).collect(),
                group: opt(&group, i),
                cluster: opt(&cluster, i),
                meta: meta.value(i).to_string(),
                turns: match turns.as_ref().and_then(|a| opt(a, i)) {
                    Some(j) => serde_json::from_str(&j)
                        .map_err(|e| corrupt(format!("turns of {}: {e}", id.value(i))))?,
                    None => Vec::new(),
                },
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field() {
        let records = vec![
            Record {
                id: "a".into(),
                text: "héllo".into(),
                label: Some("x".into()),
                source: "s".into(),
                line: 3,
                date: Some("2025-01-02".into()),
                consent: Some(true),
                tags: vec!["hard".into(), "unsafe".into()],
                cluster: Some("a".into()),
                meta: "{\"k\":1}".into(),
                ..Default::default()
            },
            Record {
                id: "b".into(),
                text: "".into(),
                source: "s".into(),
                line: 4,
                meta: "{}".into(),
                ..Default::default()
            },
        ];
        let bytes = encode(&records).unwrap();
        assert_eq!(decode(&bytes).unwrap(), records);
        assert_eq!(
            encode(&records).unwrap(),
            bytes,
            "encoding is deterministic"
        );
        assert!(decode(b"not parquet").is_err());
    }
}
