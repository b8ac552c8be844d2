#!/bin/sh
# Regenerate the README's pictures of `flowdsl explain` (run from the repository root): sh docs/pictures/make.sh
set -e
out=docs/pictures
flowdsl explain specs/pixelcnn.ar --compare specs/gated_pixelcnn.ar --picture reads --picture compare -o $out/images.png --dpi 80
flowdsl explain specs/pixelcnn_rgb.ar --picture masks -o $out/masks.png --dpi 110
flowdsl explain specs/gated_pixelcnn.ar --picture stacks -o $out/stacks.png --dpi 80
flowdsl explain specs/wavenet.ar --picture layers -o $out/wavenet.png --dpi 80
flowdsl explain specs/sparse_transformer.ar --model sparse_strided --picture attention --picture reach -o $out/attention.png --dpi 80
flowdsl explain $out/made_small.ar --picture made -o $out/made.png --dpi 80
flowdsl explain specs/realnvp.flow --picture coupling-masks --picture jacobian-structure --picture factored -o $out/flows.png --dpi 80
flowdsl explain specs/sylvester.flow --picture jacobian-structure -o $out/jacobians.png --dpi 80
