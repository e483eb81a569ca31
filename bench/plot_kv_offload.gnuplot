# Plots kv_offload_chat.py's per-turn CSV (--csv) into an SVG beside it:
#   gnuplot -e "dir='docs/figures'; name='kv_offload_chat'" bench/plot_kv_offload.gnuplot
if (!exists("dir")) dir = "."
if (!exists("name")) name = "kv_offload_chat"
set datafile separator ","
set terminal svg size 720,420 dynamic font "sans,12"
set output dir."/".name.".svg"
set grid
set key top left
set title "Multi-turn chat, dummy llama-110m, 64 conversations, pool holds ~8: TTFT per turn"
set xlabel "turn (each resends the whole history)"
set ylabel "time to first token (s)"
set yrange [0:*]
plot dir."/".name.".csv" using 1:2 skip 1 with linespoints lw 2 title "p50, no tiers (recompute)", \
     ""                  using 1:3 skip 1 with linespoints lw 2 title "p50, disk tier", \
     ""                  using 1:4 skip 1 with linespoints lw 1 dt 2 title "p99, no tiers", \
     ""                  using 1:5 skip 1 with linespoints lw 1 dt 2 title "p99, disk tier"
