# Plots concurrency_sweep.csv (bench/concurrency_sweep.py) into concurrency_sweep.svg:
#   gnuplot -e "dir='docs/figures'" bench/plot_sweep.gnuplot
if (!exists("dir")) dir = "."
set datafile separator ","
# Columns by name: the CSV gained a backend column (and median ITL) after the first figure.
set datafile columnheaders
set terminal svg size 900,420 dynamic font "sans,12"
set output dir."/concurrency_sweep.svg"
set multiplot layout 1,2 title "pagoda-bench concurrency sweep"
set grid
set logscale x 2
set key top left
set xlabel "concurrent requests"
set ylabel "output tokens/s"
plot dir."/concurrency_sweep.csv" using "concurrency":"output_throughput" with linespoints lw 2 \
     title "throughput"
set xlabel "output tokens/s"
set ylabel "ms"
unset logscale x
set key top left
plot dir."/concurrency_sweep.csv" using "output_throughput":"mean_tpot_ms" with linespoints lw 2 \
     title "mean TPOT", \
     "" using "output_throughput":"p99_itl_ms" with linespoints lw 2 title "p99 ITL"
unset multiplot
