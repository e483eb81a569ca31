# Plots the CSVs of kv_ablations into SVGs beside them:
#   gnuplot -e "dir='docs/figures'" bench/plot_ablations.gnuplot
if (!exists("dir")) dir = "."
set datafile separator ","
set terminal svg size 720,440 dynamic font "sans,12"
set key top left
set grid

set output dir."/kv_cache_ablation.svg"
set title "Time per generated token: paged KV cache vs recomputing without a cache"
set xlabel "context length (tokens)"
set ylabel "ms per generated token"
set logscale x 2
set logscale y 10
plot dir."/kv_cache_ablation.csv" using 1:2 skip 1 with linespoints lw 2 title "paged KV cache", \
     ""                         using 1:3 skip 1 with linespoints lw 2 title "no KV cache (recompute)"
unset logscale x
unset logscale y

set output dir."/paging_ablation.svg"
set title "Paged vs contiguous KV allocation on the same KV memory"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xlabel ""
set ylabel "value"
set yrange [0:*]
plot dir."/paging_ablation.csv" using 2:xtic(1) skip 1 title "mean running requests", \
     ""                       using 5 skip 1 title "KV allocated but unfilled (%)"

set output dir."/prefix_ablation.svg"
set title "Prefix caching on a shared system prompt"
set ylabel "seconds"
plot dir."/prefix_ablation.csv" using 2:xtic(1) skip 1 title "mean TTFT", \
     ""                       using 3 skip 1 title "p90 TTFT"

set output dir."/kv_dtype_ablation.svg"
set title "KV dtype at the same KV memory"
set ylabel "value"
plot dir."/kv_dtype_ablation.csv" using ($2/1000):xtic(1) skip 1 title "pool tokens (thousands)", \
     ""                         using 3 skip 1 title "mean running requests", \
     ""                         using ($5/10) skip 1 title "output tok/s (tens)"

