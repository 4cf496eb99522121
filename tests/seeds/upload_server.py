# 003 FTP上传下载文件的代码（简单版）, server. Usage: upload_server.py DIR
# Binds 127.0.0.1 port 0, prints the port, saves one file into DIR, exits.
import os
import socket
import struct
import json
import sys
sk = socket.socket()
buffer = 1024 #每次接收数据的大小
sk.bind(('127.0.0.1',0))
sk.listen()
print(sk.getsockname()[1], flush=True)  # sockit: tell the test the port
conn,addr = sk.accept()
#接收
head_len = conn.recv(4)
head_len = struct.unpack('i',head_len)[0] #解包
json_head = conn.recv(head_len).decode('utf-8') #反序列化
head = json.loads(json_head)
filesize = head['filesize']
# sockit: saved under DIR, by base name (the seed writes head['filename'] into its cwd)
with open(os.path.join(sys.argv[1], os.path.basename(head['filename'])),'wb') as f:
  while filesize:
    if filesize >= buffer: #>=是因为如果刚好等于的情况出现也是可以的。
      content = conn.recv(buffer)
      if not content: break  # sockit: the seed loops on a closed connection
      f.write(content)
      filesize -= len(content)  # sockit: the seed subtracts `buffer`, losing data on short reads
    else:
      content = conn.recv(buffer)
      f.write(content)
      break
conn.close()
sk.close()
