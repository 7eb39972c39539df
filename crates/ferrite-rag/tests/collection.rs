//! Collections end to end on all-MiniLM-L6-v2: every format, incremental ingestion, crash safety,
//! filters that still return k hits, deduplication, and the three retrieval modes.

use std::fs;
use std::path::{Path, PathBuf};

use ferrite_engine::Embedder;
use ferrite_rag::chunk::ChunkParams;
use ferrite_rag::{Collection, Filter, IngestOptions, Mode, Query, Quiet, ingest};
use serde_json::json;

fn model() -> Option<(PathBuf, Embedder)> {
    let dir = ferrite_testdata::model(ferrite_testdata::MINILM)?;
    let e = Embedder::load(&dir).unwrap();
    Some((dir, e))
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferrite-rag-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// A one-page PDF whose text layer says `text` (Helvetica, one line), with a correct xref table.
fn pdf(text: &str) -> Vec<u8> {
    let stream = format!("BT /F1 12 Tf 72 712 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
        format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for o in offsets {
        out.extend(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend(format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes());
    out
}

fn write_corpus(root: &Path) {
    fs::create_dir_all(root.join("guide")).unwrap();
    fs::write(root.join("guide/walk.rst"), "Walking trees\n=============\n\nUse os.walk to visit every directory and file below a folder, top down or bottom up.\n\nExample::\n\n    for root, dirs, files in os.walk('.'):\n        print(root)\n").unwrap();
    fs::write(root.join("guide/json.md"), "# JSON\n\nThe json module parses JSON text into Python dictionaries and lists with json.loads.\n\n## Writing\n\njson.dumps turns objects back into a JSON string.\n").unwrap();
    fs::write(root.join("cooking.txt"), "Boil the pasta in salted water for nine minutes.\n\nDrain it and add the tomato sauce.\n")
        .unwrap();
    fs::write(root.join("page.html"), "<html><head><script>secret_script_text()</script></head><body><h1>Sockets</h1><p>A socket connects two programs over a network.</p></body></html>").unwrap();
    fs::write(root.join("paper.pdf"), pdf("Photosynthesis turns sunlight into chemical energy in plants.")).unwrap();
    fs::write(root.join("image.png"), [0u8, 1, 2]).unwrap();
}

fn opts<'a>(paths: &'a [PathBuf], model: &'a Path, e: &'a Embedder) -> IngestOptions<'a> {
    IngestOptions { paths, embed_model: model, embedder: e, chunking: ChunkParams::default(), metadata: None }
}

fn top_source(c: &Collection, e: &Embedder, q: &str, mode: Mode) -> String {
    c.search(e, &Query { text: q, k: 1, mode, filter: None, fusion: None }).unwrap()[0].source.clone()
}

#[test]
fn ingest_every_format_and_retrieve_in_every_mode() {
    let Some((mpath, e)) = model() else { return };
    let (root, col) = (tempdir("corpus1"), tempdir("col1"));
    write_corpus(&root);
    let r = ingest(&col, &opts(std::slice::from_ref(&root), &mpath, &e), &mut Quiet).unwrap();
    assert_eq!((r.added, r.updated, r.removed, r.unchanged, r.failed.len()), (5, 0, 0, 0, 0), "{r:?}");
    let c = Collection::open(&col).unwrap();
    assert_eq!(c.docs.len(), 5);
    let s = |n: &str| root.join(n).to_string_lossy().into_owned();
    for mode in [Mode::Dense, Mode::Bm25, Mode::Hybrid] {
        assert_eq!(top_source(&c, &e, "how to visit all directories below a folder with os.walk", mode), s("guide/walk.rst"), "{mode:?}");
        assert_eq!(top_source(&c, &e, "plants convert sunlight into energy photosynthesis", mode), s("paper.pdf"), "{mode:?}");
    }
    assert_eq!(top_source(&c, &e, "network socket between programs", Mode::Hybrid), s("page.html"));
    // Hits carry the span of the source: for text formats it slices the file itself.
    let h = &c.search(&e, &Query { text: "json.dumps string", k: 1, mode: Mode::Bm25, filter: None, fusion: None }).unwrap()[0];
    let file: String = fs::read_to_string(&h.source).unwrap();
    let span: String = file.chars().skip(h.start).take(h.end - h.start).collect();
    assert_eq!(span, h.text);
    assert!(h.text.contains("json.dumps"));
    // The script's text is not visible text.
    assert!(c.chunks.iter().all(|ch| !ch.text.contains("secret_script_text")));
    // Titles come from the first heading.
    assert_eq!(c.docs.iter().find(|d| d.source.ends_with("walk.rst")).unwrap().title.as_deref(), Some("Walking trees"));
    fs::remove_dir_all(&root).ok();
    fs::remove_dir_all(&col).ok();
}

#[test]
fn incremental_ingest_skips_unchanged_replaces_changed_removes_deleted() {
    let Some((mpath, e)) = model() else { return };
    let (root, col) = (tempdir("corpus2"), tempdir("col2"));
    write_corpus(&root);
    ingest(&col, &opts(std::slice::from_ref(&root), &mpath, &e), &mut Quiet).unwrap();
    let before = Collection::open(&col).unwrap();
    let walk_vec: Vec<f32> = before.vector(before.chunks.iter().position(|c| c.text.contains("os.walk")).unwrap());

    fs::write(root.join("cooking.txt"), "Bake the bread at 220 degrees for thirty minutes.\n").unwrap();
    fs::remove_file(root.join("page.html")).unwrap();
    let r = ingest(&col, &opts(std::slice::from_ref(&root), &mpath, &e), &mut Quiet).unwrap();
    assert_eq!((r.added, r.updated, r.removed, r.unchanged), (0, 1, 1, 3), "{r:?}");
    assert_eq!(r.chunks_embedded, 1, "only the changed file is embedded again");
    let after = Collection::open(&col).unwrap();
    assert_eq!(after.docs.len(), 4);
    assert!(after.chunks.iter().all(|c| !c.text.contains("pasta") && !c.text.contains("socket")));
    assert!(after.chunks.iter().any(|c| c.text.contains("Bake the bread")));
    let i = after.chunks.iter().position(|c| c.text.contains("os.walk")).unwrap();
    assert_eq!(after.vector(i), walk_vec, "an unchanged document keeps its vectors");
    // Only the live generation remains on disk.
    let gens: Vec<String> = fs::read_dir(&col)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gen-"))
        .collect();
    assert_eq!(gens, std::slice::from_ref(&after.generation));
    // Ingesting one file does not delete the others (they are outside what was ingested).
    let r = ingest(&col, &opts(&[root.join("cooking.txt")], &mpath, &e), &mut Quiet).unwrap();
    assert_eq!((r.removed, r.unchanged), (0, 1));
    assert_eq!(Collection::open(&col).unwrap().docs.len(), 4);
    fs::remove_dir_all(&root).ok();
    fs::remove_dir_all(&col).ok();
}

#[test]
fn an_interrupted_ingest_leaves_the_collection_as_it_was() {
    let Some((mpath, e)) = model() else { return };
    let (root, col) = (tempdir("corpus3"), tempdir("col3"));
    write_corpus(&root);
    ingest(&col, &opts(std::slice::from_ref(&root), &mpath, &e), &mut Quiet).unwrap();
    let live = Collection::open(&col).unwrap();
    // What a crash leaves at each point before the switch: a half-written next generation, a renamed but
    // unreferenced one, a half-written CURRENT.tmp.
    let next = col.join(".tmp-gen-000002");
    fs::create_dir_all(next.join("bm25")).unwrap();
    fs::write(next.join("docs.json"), "[{\"trunc").unwrap();
    fs::create_dir_all(col.join("gen-000009")).unwrap();
    fs::write(col.join("CURRENT.tmp"), "gen-0000").unwrap();
    let reopened = Collection::open(&col).unwrap();
    assert_eq!(reopened.generation, live.generation);
    assert_eq!(reopened.chunks, live.chunks);
    // The next ingest cleans up and proceeds.
    fs::write(root.join("new.txt"), "Quantum tunnelling lets particles cross barriers.\n").unwrap();
    let r = ingest(&col, &opts(std::slice::from_ref(&root), &mpath, &e), &mut Quiet).unwrap();
    assert_eq!(r.added, 1);
    assert!(!next.exists() && !col.join("CURRENT.tmp").exists() && !col.join("gen-000009").exists());
    // A collection built with another embedding model refuses this one.
    let cfg_path = col.join("collection.json");
    let cfg = fs::read_to_string(&cfg_path).unwrap();
    let fp = Collection::read_config(&col).unwrap().fingerprint;
    fs::write(&cfg_path, cfg.replace(&fp, "0000")).unwrap();
    let err = ingest(&col, &opts(std::slice::from_ref(&root), &mpath, &e), &mut Quiet).expect_err("other model").to_string();
    assert!(err.contains("different model"), "{err}");
    // A corrupt live generation is reported, not half-loaded.
    let c = Collection::open(&col).unwrap();
    fs::write(col.join(&c.generation).join("vectors.f32"), [0u8; 12]).unwrap();
    let err = Collection::open(&col).err().expect("corrupt vectors").to_string();
    assert!(err.contains("vectors.f32"), "{err}");
    fs::remove_dir_all(&root).ok();
    fs::remove_dir_all(&col).ok();
}

#[test]
fn filters_return_k_hits_and_duplicates_never_shorten_the_list() {
    let Some((mpath, e)) = model() else { return };
    let (root, col) = (tempdir("corpus4"), tempdir("col4"));
    // 30 documents in two groups, and three byte-identical copies of one text.
    for i in 0..30 {
        let group = if i % 3 == 0 { "rare" } else { "common" };
        fs::create_dir_all(root.join(group)).unwrap();
        fs::write(root.join(group).join(format!("d{i}.txt")), format!("Document {i} talks about topic {} and the number {i}.\n", i % 5))
            .unwrap();
    }
    for i in 0..3 {
        fs::write(root.join(format!("copy{i}.txt")), "Identical text about gardening tomatoes.\n").unwrap();
    }
    let r = ingest(&col, &IngestOptions { metadata: Some(json!({"batch": 1})), ..opts(std::slice::from_ref(&root), &mpath, &e) }, &mut Quiet).unwrap();
    assert_eq!(r.added, 33);
    let c = Collection::open(&col).unwrap();
    let rare = Filter::parse(&json!({"source": {"$prefix": root.join("rare").to_string_lossy()}})).unwrap();
    for mode in [Mode::Dense, Mode::Hybrid] {
        let hits = c.search(&e, &Query { text: "gardening tomatoes", k: 10, mode, filter: Some(&rare), fusion: None }).unwrap();
        assert_eq!(hits.len(), 10, "{mode:?}: 10 rare documents exist, so 10 come back");
        assert!(hits.iter().all(|h| h.source.contains("/rare/")));
    }
    // The three copies count once; the list is still k long.
    let hits = c.search(&e, &Query { text: "gardening tomatoes", k: 5, mode: Mode::Dense, filter: None, fusion: None }).unwrap();
    assert_eq!(hits.len(), 5);
    assert_eq!(hits.iter().filter(|h| h.text.contains("gardening")).count(), 1);
    // Metadata given at ingest is filterable; a filter matching nothing gives nothing.
    let batch = Filter::parse(&json!({"batch": 1, "format": "text"})).unwrap();
    assert_eq!(c.search(&e, &Query { text: "topic", k: 40, mode: Mode::Hybrid, filter: Some(&batch), fusion: None }).unwrap().len(), 31);
    let none = Filter::parse(&json!({"batch": 2})).unwrap();
    assert!(c.search(&e, &Query { text: "topic", k: 5, mode: Mode::Hybrid, filter: Some(&none), fusion: None }).unwrap().is_empty());
    fs::remove_dir_all(&root).ok();
    fs::remove_dir_all(&col).ok();
}
