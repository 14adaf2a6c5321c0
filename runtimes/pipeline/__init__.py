"""From pixels to Results: letterbox, the batch loop, the head's numpy decode, NMS and masks, end-to-end outputs, Results, RLE and polygons."""
