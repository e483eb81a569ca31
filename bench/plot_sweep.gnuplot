# Plots concurrency_sweep.csv (bench/concurrency_sweep.py) into concurrency_sweep.svg:
#   gnuplot -e "dir='docs/figures'" bench/plot_sweep.gnuplot
if (!exists("dir")) dir = "."
set datafile separator ","
set terminal svg size 900,420 dynamic font "sans,12"
set output dir."/concurrency_sweep.svg"
set multiplot layout 1,2 title "pagoda-bench concurrency sweep"
set grid
set logscale x 2
set key top left
set xlabel "concurrent requests"
set ylabel "output tokens/s"
plot dir."/concurrency_sweep.csv" using 1:3 skip 1 with linespoints lw 2 title "throughput"
set xlabel "output tokens/s"
set ylabel "ms"
unset logscale x
set key top left
plot dir."/concurrency_sweep.csv" using 3:6 skip 1 with linespoints lw 2 title "mean TPOT", \
     ""                          using 3:9 skip 1 with linespoints lw 2 title "p99 ITL"
unset multiplot
