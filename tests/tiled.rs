//! `infer --tile N`: large photos in tiles, every instance norm with the whole photo's
//! statistics, give the untiled picture (within 2/255; no seams, no colour shift).
mod common;

use std::path::Path;

fn stylize(model: &Path, input: &Path, output: &Path, tile: &str) -> image::RgbImage {
    let args = [
        "-c".as_ref(),
        model.as_os_str(),
        input.as_os_str(),
        "-o".as_ref(),
        output.as_os_str(),
        "--device".as_ref(),
        "cpu".as_ref(),
        "--tile".as_ref(),
        tile.as_ref(),
    ];
    // One thread: the test checks numbers, and OpenMP's spinning between a tiled pass's many
    // small operations slows it badly on a busy machine.
    let out = std::process::Command::new(common::bin("infer"))
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    common::read_rgb(output)
}

#[test]
fn tiles_give_the_untiled_picture() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    common::random_model(&model, 4);
    // Odd sides: the alignment padding, short edge cells and every kind of tile border.
    for (i, (w, h)) in [(203, 141), (130, 257)].into_iter().enumerate() {
        let input = dir.path().join(format!("p{i}.png"));
        common::write_image(&input, w, h, i as u64);
        let whole = stylize(
            &model,
            &input,
            &dir.path().join(format!("whole{i}.png")),
            "off",
        );
        let tiled = stylize(
            &model,
            &input,
            &dir.path().join(format!("tiled{i}.png")),
            "64",
        );
        assert_eq!(whole.dimensions(), tiled.dimensions());
        let diffs: Vec<u8> = whole
            .as_raw()
            .iter()
            .zip(tiled.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let worst = diffs.iter().copied().max().unwrap();
        let differing = diffs.iter().filter(|&&d| d > 0).count() as f64 / diffs.len() as f64;
        assert!(worst <= 2, "{w}×{h}: tiled differs by {worst}/255");
        // Rounding only: a wrong statistic or halo would move most pixels, not a few percent.
        assert!(
            differing < 0.05,
            "{w}×{h}: {:.1}% of values differ",
            100.0 * differing
        );
        let mean = |img: &image::RgbImage| {
            img.as_raw().iter().map(|&v| f64::from(v)).sum::<f64>() / img.as_raw().len() as f64
        };
        assert!((mean(&whole) - mean(&tiled)).abs() < 0.05, "colour shift");
    }
    // A tile side that is not a multiple of 4 is refused on the command line.
    let out = common::run(
        "infer",
        [
            "-c".as_ref(),
            model.as_os_str(),
            "x.png".as_ref(),
            "--tile".as_ref(),
            "30".as_ref(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("multiple of 4"));
}
