#!/bin/bash
# The blog's entrypoint (../shared/seed/dask-cluster-security.md), rebuilt for the benchmark only:
# current dask spells dask-scheduler / dask-worker as `dask scheduler` / `dask worker`.
num_workers=${NUM_WORKERS:-1}
threads_per_worker=${THREADS_PER_WORKER:-1}
memory_per_worker=${MEMORY_PER_WORKER:-1}

echo "$DASK_CLUSTER_CERT" > ~/dask-cluster-cert.pem
echo "$DASK_CLUSTER_KEY" > ~/dask-cluster-key.pem

# Start the dask scheduler & workers
echo "Starting dask scheduler"
poetry run dask scheduler \
    --tls-ca-file ~/dask-cluster-cert.pem \
    --tls-cert ~/dask-cluster-cert.pem \
    --tls-key ~/dask-cluster-key.pem > log.txt 2>&1 &

echo "Creating $num_workers dask workers"
for i in `seq $num_workers`
do
    poetry run dask worker \
        --tls-ca-file ~/dask-cluster-cert.pem \
        --tls-cert ~/dask-cluster-cert.pem \
        --tls-key ~/dask-cluster-key.pem \
        --nthreads $threads_per_worker \
        --memory-limit "${memory_per_worker}GB" \
        tls://127.0.0.1:8786 > log.txt 2>&1 &
done

exec tail -f log.txt
