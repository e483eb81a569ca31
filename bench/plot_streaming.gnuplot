# Plots streaming_llm's CSV into an SVG beside it:
#   gnuplot -e "dir='docs/figures'" bench/plot_streaming.gnuplot
if (!exists("dir")) dir = "."
set datafile separator ","
set terminal svg size 720,760 dynamic font "sans,12"
set output dir."/streaming_llm.svg"
set multiplot layout 2,1
set grid
set key top left
set title "pagoda-kjv on held-out KJV text, 8x its 256-token context: perplexity per segment"
set xlabel "position in the text (tokens; the model was trained on 256)"
set ylabel "perplexity"
set logscale y 2
plot dir."/streaming_llm.csv" using (($1+$2)/2):3 skip 1 with linespoints lw 2 title "4 sinks + 252-token window (streaming)", \
     ""                     using (($1+$2)/2):4 skip 1 with linespoints lw 2 title "256-token window, no sinks", \
     ""                     using (($1+$2)/2):5 skip 1 with linespoints lw 2 title "recompute the last 256 tokens per token"
unset logscale y
set title "Through the engine, 4 sinks + 252-token window: KV blocks held and decode rate"
set ylabel "KV blocks held (16 tokens each)"
set y2label "decode tokens/s"
set y2tics
set yrange [0:*]
set y2range [0:*]
plot dir."/streaming_llm.csv" using (($1+$2)/2):6 skip 1 with linespoints lw 2 title "blocks held", \
     ""                     using (($1+$2)/2):7 skip 1 axes x1y2 with linespoints lw 2 title "decode tokens/s"
unset multiplot
