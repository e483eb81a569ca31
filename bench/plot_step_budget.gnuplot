# Plots step_budget_sweep.csv (bench/step_budget_sweep.py) into step_budget_sweep.svg:
#   gnuplot -e "dir='docs/figures'" bench/plot_step_budget.gnuplot
# One point per configuration (fixed token budgets, then time caps): p99 inter-token latency,
# as a multiple of a decode-only step, against output throughput, at each concurrency.
if (!exists("dir")) dir = "."
set datafile separator ","
set terminal svg size 900,420 dynamic font "sans,11"
set output dir."/step_budget_sweep.svg"
set multiplot layout 1,2 title "Prefill chunks beside decodes: 512-token prompts, dummy llama-110m, 2 threads"
set grid
set key bottom right
set xlabel "output tokens/s"
set ylabel "p99 ITL / decode-only step"
set logscale y 2
plot for [c in "8 16"] dir."/step_budget_sweep.csv" \
       using (strcol(2) eq c && strcol(1) ne "decode-only" ? $3 : NaN):7 skip 1 \
       with points pt 7 ps 1 title "c=".c, \
     for [c in "8 16"] "" using (strcol(2) eq c && strcol(1) ne "decode-only" ? $3 : NaN):7:1 \
       skip 1 with labels offset 0.6,0.6 left font "sans,9" notitle, \
     2 with lines dt 2 lc rgb "gray" title "2x"
unset logscale y
set key top right
set xlabel "output tokens/s"
set ylabel "mean TTFT, ms"
plot for [c in "8 16"] dir."/step_budget_sweep.csv" \
       using (strcol(2) eq c && strcol(1) ne "decode-only" ? $3 : NaN):4 skip 1 \
       with points pt 7 ps 1 title "c=".c, \
     for [c in "8 16"] "" using (strcol(2) eq c && strcol(1) ne "decode-only" ? $3 : NaN):4:1 \
       skip 1 with labels offset 0.6,0.6 left font "sans,9" notitle
unset multiplot
