# The loss curve of pagoda-kjv (docs/model_card.md) from the training log.
#   gnuplot -e "csv='/tmp/pagoda-kjv-train/loss.csv'; out='docs/pagoda_kjv_loss.svg'" \
#       tools/builtin_model/plot_loss.gnuplot
# Columns: step, tokens, elapsed_s, lr, train_loss (mean over the logging window), heldout_loss
# (every eval step; empty otherwise).
if (!exists("csv")) csv = '/tmp/pagoda-kjv-train/loss.csv'
if (!exists("out")) out = 'docs/pagoda_kjv_loss.svg'
set terminal svg size 800,480 dynamic font "sans,12" background "white"
set output out
set datafile separator ","
set key top right
set grid
set title "pagoda-kjv: cross-entropy per token (nats)"
set xlabel "step (16 windows of 256 tokens)"
set ylabel "loss"
set yrange [1.5:8]
set y2label "learning rate (10^{-3})"
set y2range [0:2.5]
set y2tics 0.5
set ytics nomirror
set format y2 "%.1f"
plot csv using 1:5 every ::1 with lines lw 2 lc rgb "#1f77b4" title "train (25-step mean)", \
     csv using 1:($6 > 0 ? $6 : 1/0) every ::1 with linespoints pt 7 ps 0.6 lw 2 lc rgb "#d62728" title "held out (622 verses)", \
     csv using 1:($4 * 1000) every ::1 axes x1y2 with lines dt 2 lc rgb "#7f7f7f" title "learning rate"
