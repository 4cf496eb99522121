#_*_coding:utf-8_*_
# 001 §五 三 qq聊天, client1.py. Usage: qq_client.py HOST PORT
__author__ = 'Linhaifeng'
import socket
import sys
BUFSIZE=1024
udp_client_socket=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)

server = (sys.argv[1], int(sys.argv[2]))  # sockit: the seed's ('127.0.0.1',8081)
qq_name_dic={
    '狗哥alex':server,
    '瞎驴':server,
    '一棵树':server,
    '武大郎':server,
}


while True:
    try:
        qq_name=input('请选择聊天对象: ').strip()
        while True:
            msg=input('请输入消息,回车发送: ').strip()
            if msg == 'quit':break
            if not msg or not qq_name or qq_name not in qq_name_dic:continue
            udp_client_socket.sendto(msg.encode('utf-8'),qq_name_dic[qq_name])

            back_msg,addr=udp_client_socket.recvfrom(BUFSIZE)
            print('来自[%s:%s]的一条消息:\033[1;44m%s\033[0m' %(addr[0],addr[1],back_msg.decode('utf-8')))
    except EOFError:  # sockit: stdin ended, the test is over
        break

udp_client_socket.close()
