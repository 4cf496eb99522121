//! 1 GiB multipart put and a whole get, to one S3 endpoint, by object_store and by OpenDAL:
//! 8 MiB parts, 4 in flight, the same bytes; prints MB/s per round.
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use object_store::{ObjectStoreExt, WriteMultipart};

const SIZE: usize = 1 << 30;
const PART: usize = 8 << 20;

#[tokio::main]
async fn main() {
    drop(rustls::crypto::ring::default_provider().install_default());
    let endpoint = std::env::args().nth(1).expect("endpoint");
    let rounds: usize = std::env::args().nth(2).map_or(3, |r| r.parse().unwrap());
    let data: Vec<Bytes> = (0..SIZE / PART)
        .map(|i| Bytes::from(vec![(i * 7 % 251) as u8; PART]))
        .collect();
    let os = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name("bench")
        .with_region("us-east-1")
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .unwrap();
    let od = opendal::Operator::new(
        opendal::services::S3::default()
            .bucket("bench")
            .region("us-east-1")
            .endpoint(&endpoint)
            .access_key_id(&std::env::var("AWS_ACCESS_KEY_ID").unwrap())
            .secret_access_key(&std::env::var("AWS_SECRET_ACCESS_KEY").unwrap()),
    )
    .unwrap()
    .finish();
    let mb = |secs: f64| SIZE as f64 / secs / 1e6;
    for round in 0..rounds {
        let t = Instant::now();
        let path = object_store::path::Path::from("cmp/os.bin");
        let upload = os.put_multipart(&path).await.unwrap();
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        for part in &data {
            w.wait_for_capacity(4).await.unwrap();
            w.put(part.clone());
        }
        w.finish().await.unwrap();
        let os_put = mb(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let mut w = od
            .writer_with("cmp/od.bin")
            .chunk(PART)
            .concurrent(4)
            .await
            .unwrap();
        for part in &data {
            w.write(part.clone()).await.unwrap();
        }
        w.close().await.unwrap();
        let od_put = mb(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let mut got = 0;
        let mut s = os.get(&path).await.unwrap().into_stream();
        while let Some(c) = s.next().await {
            got += c.unwrap().len();
        }
        assert_eq!(got, SIZE);
        let os_get = mb(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let r = od
            .reader_with("cmp/od.bin")
            .chunk(PART)
            .concurrent(1)
            .await
            .unwrap();
        let mut s = r.into_bytes_stream(..).await.unwrap();
        let mut got = 0;
        while let Some(c) = s.next().await {
            got += c.unwrap().len();
        }
        assert_eq!(got, SIZE);
        let od_get = mb(t.elapsed().as_secs_f64());
        println!(
            "round {round}: put object_store {os_put:.0} MB/s, OpenDAL {od_put:.0} MB/s; \
             get object_store {os_get:.0} MB/s, OpenDAL {od_get:.0} MB/s"
        );
    }
}
