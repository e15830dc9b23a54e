//! Export back to the Python ecosystem: a Hugging Face `BertForSequenceClassification` directory (`cls`
//! pooling) or a sentence-transformers directory plus the head as safetensors + JSON (`mean` pooling).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use hone_core::{Error, Result};
use serde_json::{Value, json};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::bert::{BertEncoder, candle_err};
use crate::head::LinearHead;

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::Internal(e.to_string()))?;
    write(path, s.as_bytes())
}

/// The base `tokenizer.json` without baked-in padding and with truncation at `max_length`, so Python
/// tokenises exactly as hone did.
fn export_tokenizer(base: &Path, max_length: usize, out: &Path) -> Result<()> {
    let src = base.join("tokenizer.json");
    let mut tok = Tokenizer::from_file(&src).map_err(|e| Error::Config {
        path: src.clone(),
        line: 0,
        col: 0,
        message: format!("cannot load tokenizer: {e}"),
        hint: "expected a Hugging Face tokenizer.json".into(),
    })?;
    tok.with_padding(None);
    tok.with_truncation(Some(TruncationParams {
        direction: TruncationDirection::Right,
        max_length,
        strategy: TruncationStrategy::LongestFirst,
        stride: 0,
    }))
    .map_err(|e| Error::Usage(format!("cannot set truncation: {e}")))?;
    let dst = out.join("tokenizer.json");
    tok.save(&dst, false)
        .map_err(|e| Error::io(&dst, std::io::Error::other(e.to_string())))?;
    let lower = std::fs::read_to_string(&src)
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|v| v["normalizer"]["lowercase"].as_bool())
        .unwrap_or(true);
    write_json(
        &out.join("tokenizer_config.json"),
        &json!({
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": lower,
            "model_max_length": max_length,
            "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
            "unk_token": "[UNK]", "mask_token": "[MASK]",
        }),
    )?;
    write_json(
        &out.join("special_tokens_map.json"),
        &json!({"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                "unk_token": "[UNK]", "mask_token": "[MASK]"}),
    )
}

fn base_config(base: &Path) -> Result<serde_json::Map<String, Value>> {
    let p = base.join("config.json");
    let s = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    match serde_json::from_str::<Value>(&s) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Error::Config {
            path: p,
            line: 0,
            col: 0,
            message: "config.json is not a JSON object".into(),
            hint: "use the model's own config.json".into(),
        }),
    }
}

fn encoder_tensors(enc: &BertEncoder, prefix: &str) -> Result<HashMap<String, Tensor>> {
    let data = enc
        .varmap()
        .data()
        .lock()
        .map_err(|_| Error::Internal("varmap lock poisoned".into()))?;
    Ok(data
        .iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v.as_tensor().clone()))
        .collect())
}

/// Writes f32 tensors with the `{"format": "pt"}` metadata Hugging Face tools write.
fn save_tensors(map: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(map.len());
    for (name, t) in map {
        let v = t
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(candle_err)?;
        data.push((
            name.clone(),
            t.dims().to_vec(),
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ));
    }
    data.sort_by(|a, b| a.0.cmp(&b.0));
    let views = data
        .iter()
        .map(|(n, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Internal(format!("safetensors view: {e}")))?;
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    safetensors::tensor::serialize_to_file(views, Some(meta), path).map_err(|e| {
        Error::io(
            path,
            std::io::Error::other(format!("cannot write safetensors: {e}")),
        )
    })
}

/// A `BertForSequenceClassification` directory: `config.json` (with `id2label`/`label2id`),
/// `model.safetensors` (`bert.*` encoder and pooler, `classifier.*`), `tokenizer.json`,
/// `tokenizer_config.json`, `special_tokens_map.json`.
pub fn export_classifier(
    encoder: &BertEncoder,
    pooler: (&Tensor, &Tensor),
    classifier: (&Tensor, &Tensor),
    labels: &[String],
    base: &Path,
    max_length: usize,
    out: &Path,
) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut cfg = base_config(base)?;
    cfg.insert(
        "architectures".into(),
        json!(["BertForSequenceClassification"]),
    );
    cfg.insert(
        "id2label".into(),
        Value::Object(
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), json!(l)))
                .collect(),
        ),
    );
    cfg.insert(
        "label2id".into(),
        Value::Object(
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), json!(i)))
                .collect(),
        ),
    );
    cfg.insert("problem_type".into(), json!("single_label_classification"));
    write_json(&out.join("config.json"), &Value::Object(cfg))?;
    let mut t = encoder_tensors(encoder, "bert.")?;
    t.insert("bert.pooler.dense.weight".into(), pooler.0.clone());
    t.insert("bert.pooler.dense.bias".into(), pooler.1.clone());
    t.insert("classifier.weight".into(), classifier.0.clone());
    t.insert("classifier.bias".into(), classifier.1.clone());
    save_tensors(&t, &out.join("model.safetensors"))?;
    export_tokenizer(base, max_length, out)
}

/// A sentence-transformers directory (Transformer → mean Pooling → optional Normalize) for `encoder`,
/// and, when given, the classification head on its embeddings as `head.safetensors`
/// (`weight` `(classes, dim)`, `bias`) + `head.json` (labels, whether it reads normalised vectors).
#[allow(clippy::too_many_arguments)]
pub fn export_sentence_transformer(
    encoder: &BertEncoder,
    pooler: Option<(&Tensor, &Tensor)>,
    normalize: bool,
    head: Option<(&LinearHead, &[String])>,
    base: &Path,
    max_length: usize,
    out: &Path,
) -> Result<()> {
    std::fs::create_dir_all(out.join("1_Pooling")).map_err(|e| Error::io(out, e))?;
    let mut cfg = base_config(base)?;
    cfg.insert("architectures".into(), json!(["BertModel"]));
    write_json(&out.join("config.json"), &Value::Object(cfg))?;
    let mut t = encoder_tensors(encoder, "")?;
    if let Some((w, b)) = pooler {
        t.insert("pooler.dense.weight".into(), w.clone());
        t.insert("pooler.dense.bias".into(), b.clone());
    }
    save_tensors(&t, &out.join("model.safetensors"))?;
    export_tokenizer(base, max_length, out)?;
    let dim = encoder.config().hidden_size;
    let mut modules = vec![
        json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
        json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
    ];
    if normalize {
        std::fs::create_dir_all(out.join("2_Normalize")).map_err(|e| Error::io(out, e))?;
        modules.push(json!({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}));
    }
    write_json(&out.join("modules.json"), &Value::Array(modules))?;
    write_json(
        &out.join("sentence_bert_config.json"),
        &json!({"max_seq_length": max_length, "do_lower_case": false}),
    )?;
    write_json(
        &out.join("1_Pooling/config.json"),
        &json!({
            "word_embedding_dimension": dim,
            "pooling_mode_cls_token": false,
            "pooling_mode_mean_tokens": true,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
        }),
    )?;
    if let Some((h, labels)) = head {
        let dev = Device::Cpu;
        let w = Tensor::from_slice(&h.weight, (h.classes, h.dim), &dev).map_err(candle_err)?;
        let b = Tensor::from_slice(&h.bias, h.classes, &dev).map_err(candle_err)?;
        let map: HashMap<String, Tensor> =
            [("weight".to_string(), w), ("bias".to_string(), b)].into();
        save_tensors(&map, &out.join("head.safetensors"))?;
        write_json(
            &out.join("head.json"),
            &json!({
                "labels": labels,
                "input": if normalize { "normalised sentence embedding" } else { "sentence embedding" },
                "logits": "embedding @ weight.T + bias",
            }),
        )?;
    }
    Ok(())
}
