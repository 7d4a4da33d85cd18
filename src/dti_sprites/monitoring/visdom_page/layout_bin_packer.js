/* The global `Bin.ShelfFirst` that visdom's main.js uses to place new windows on its grid.
 * Written for dti-sprites so that the page works offline (visdom's own start-up fetches a copy
 * from a CDN). Windows go left to right in rows ("shelves") `maxWidth` grid columns wide; a
 * window that does not fit in the current row starts a new row under its tallest window. */
var Bin = (function () {
  function ShelfFirst(content, maxWidth) {
    this.content = content; // [{width, height}] in grid cells; main.js appends new windows to it
    this.maxWidth = maxWidth;
  }

  // Grid cell {x, y} of window `index`, placing windows 0..index in their order.
  ShelfFirst.prototype.position = function (index, maxWidth) {
    var width = maxWidth || this.maxWidth;
    var x = 0, y = 0, rowHeight = 0, placed = { x: 0, y: 0 };
    for (var i = 0; i <= index && i < this.content.length; i++) {
      var item = this.content[i];
      if (x > 0 && x + item.width > width) {
        y += rowHeight;
        x = 0;
        rowHeight = 0;
      }
      placed = { x: x, y: y };
      x += item.width;
      rowHeight = Math.max(rowHeight, item.height);
    }
    return placed;
  };

  return { ShelfFirst: ShelfFirst };
})();
