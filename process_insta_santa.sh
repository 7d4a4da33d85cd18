#!/usr/bin/env bash
# Build the Instagram collection read by configs/instagram.yml:
#   datasets/instagram/<tag>/train/*.jpg, 128x128 centre crops.
# Usage: ./process_insta_santa.sh [RAW_DIR]
#   RAW_DIR      a folder of images already scraped or collected by hand (read recursively);
#                without it, images are scraped into datasets/instagram/raw_<tag>/ first.
# Variables (all optional):
#   tag=NAME     hashtag (default santaphoto); count=N posts to scrape (default 10000);
#   size=PX      output side (default 128); data_root=DIR (default datasets).
# Scraping needs the `instaloader` command (pip install instaloader) and a network; when it
# is missing the script says so and goes on with whatever RAW_DIR holds.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh

tag=${tag:-santaphoto}
count=${count:-10000}
size=${size:-128}
data_root=${data_root:-datasets}
raw=${1:-$data_root/instagram/raw_$tag}
out=$data_root/instagram/$tag/train

if [ $# -eq 0 ]; then
  if command -v instaloader >/dev/null 2>&1; then
    echo "scraping up to $count posts of #$tag into $raw (this can take hours)" >&2
    mkdir -p "$raw"
    # Only the pictures: no videos, captions, comments or metadata files.
    (cd "$raw" && instaloader --no-videos --no-video-thumbnails --no-captions --no-metadata-json \
      --no-compress-json --no-profile-pic --count "$count" "#$tag") \
      || echo "instaloader stopped with an error; resizing what was downloaded" >&2
  else
    echo "scraping skipped: the scraping tool 'instaloader' is not installed" >&2
    echo "  (pip install instaloader), or pass a folder of images: ./process_insta_santa.sh RAW_DIR" >&2
  fi
fi

if [ ! -d "$raw" ]; then
  echo "error: no raw image folder $raw; scrape with instaloader or pass RAW_DIR" >&2
  exit 1
fi
echo "resizing the images of $raw to ${size}x${size} into $out" >&2
.venv/bin/python -m dti_sprites resize-images "$raw" "$out" --size "$size" --format jpg
echo "done: train with  cuda=0 config=instagram.yml tag=$tag ./pipeline.sh --set dataset.tag=$tag" >&2
