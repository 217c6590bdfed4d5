#!/usr/bin/env bash
# Regenerates the fio fixtures in this directory: fio 3.33 (Debian 12), io_uring, O_DIRECT, on a
# 256 MiB file in /var/tmp, 1 s ramp + 5 s measured each, IOPS logged every 100 ms. The arguments
# are exactly what `FioJob::args` renders for the jobs in perf/tests/fio_svg.rs (a test checks the
# JSON's "job options" against them). The numbers are this machine's, not a target.
set -euo pipefail
cd "$(dirname "$0")"
FILE=${FIO_FIXTURE_FILE:-/var/tmp/cyv-fio-fixture.dat}
run() { # NAME RW DEPTH [more options before --ioengine]
  local name=$1 rw=$2 depth=$3; shift 3
  local mix=() sync=()
  for o in "$@"; do case $o in --rwmixread=*) mix=("$o") ;; --fdatasync=1) sync=("$o") ;; esac; done
  fio --name="$name" --filename="$FILE" --rw="$rw" "${mix[@]}" --bs=4096 --iodepth="$depth" --size=268435456 \
    --direct=1 "${sync[@]}" --ioengine=io_uring --time_based --runtime=5 --ramp_time=1 --numjobs=1 \
    --group_reporting --output-format=json --write_iops_log="$name" --log_avg_msec=100 >"$name.json"
  mv "${name}_iops.1.log" "$name.iops.log"
}
run randread-4k-qd1 randread 1
run randwrite-4k-qd16 randwrite 16
run randrw70-4k-qd8 randrw 8 --rwmixread=70
run write-4k-fdatasync write 1 --fdatasync=1
rm -f "$FILE"
